import KafkaProtocol
import NIOCore
import Testing
@testable import KafkaWire

/// What the client asks after a server refuses its ApiVersions version: the body of such a refusal
/// comes in several shapes in the wild, and none may stop the client from falling back.
@Suite("ApiVersions fallback", .timeLimit(.minutes(1)))
struct ApiVersionsFallbackTests {
    static func refusal(shape: Int16, apiVersionsMax: Int16) throws -> ByteBuffer {
        var resp = ApiVersionsResponse()
        resp.errorCode = .unsupportedVersion
        var entry = ApiVersionsResponse.ApiVersion()
        entry.apiKey = ApiKey.apiVersions.rawValue
        entry.minVersion = 0
        entry.maxVersion = apiVersionsMax
        resp.apiKeys = [entry]
        var w = KafkaWriter()
        try resp.encode(to: &w, version: shape)
        return w.buffer
    }

    @Test func apacheKafkasV0ShapedRefusalNamesTheServersMaximum() throws {
        #expect(Self.fallback(try Self.refusal(shape: 0, apiVersionsMax: 3), asked: 4) == 3)
    }

    @Test func librdkafkasMockAnswersInTheFlexibleShapeOfTheVersionAsked() throws {
        // The mock cluster serves ApiVersions v0–2 and answers v3 or v4 in the flexible shape.
        #expect(Self.fallback(try Self.refusal(shape: 3, apiVersionsMax: 2), asked: 3) == 2)
        #expect(Self.fallback(try Self.refusal(shape: 4, apiVersionsMax: 2), asked: 4) == 2)
    }

    @Test func aBodyThatNamesNothingUsableFallsBackToV0() throws {
        var bare = ByteBuffer()
        bare.writeInteger(ErrorCode.unsupportedVersion.rawValue, endianness: .big)
        #expect(Self.fallback(bare, asked: 4) == 0)
        var junk = bare
        junk.writeBytes([0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3])
        #expect(Self.fallback(junk, asked: 4) == 0)
        // A maximum at or above what was refused cannot be right.
        #expect(Self.fallback(try Self.refusal(shape: 0, apiVersionsMax: 4), asked: 4) == 0)
    }

    static func fallback(_ payload: ByteBuffer, asked: Int16) -> Int16 {
        KafkaConnection.fallbackVersion(after: payload, asked: asked)
    }
}
