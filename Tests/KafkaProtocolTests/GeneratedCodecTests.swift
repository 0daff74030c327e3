import Foundation
import NIOCore
import Testing
@testable import KafkaProtocol
import ProtocolCodegen

@Suite("Generated codecs", .timeLimit(.minutes(2)))
struct GeneratedCodecTests {
    /// Every generated message, at every version it declares valid, survives encode → decode → encode
    /// with equal values and identical bytes, for many random samples.
    @Test func everyMessageRoundTripsAtEveryVersion() throws {
        var checked = 0
        for type in allGeneratedMessages {
            for version in type.validVersions {
                checked += try roundTrip(type, version: version, samples: 25)
            }
        }
        #expect(checked > 1000)
    }

    private func roundTrip<M: SampledMessage>(_: M.Type, version: Int16, samples: Int) throws -> Int {
        var rng = SampleRNG(seed: UInt64(version) &* 7919 &+ UInt64(String(describing: M.self).utf8.count))
        for i in 0..<samples {
            let original = M.randomSample(version: version, rng: &rng)
            var bytes = try original.encoded(version: version)
            let length = bytes.readableBytes
            var reader = bytes
            let decoded = try M(from: &reader, version: version)
            #expect(reader.readableBytes == 0, "\(M.self) v\(version) sample \(i): \(reader.readableBytes) bytes left over")
            #expect(decoded == original, "\(M.self) v\(version) sample \(i) changed in a round trip")
            let again = try decoded.encoded(version: version)
            #expect(again == bytes, "\(M.self) v\(version) sample \(i) re-encodes differently")
            // Every strict prefix must fail to decode rather than crash or succeed.
            if length > 0 && i == 0 {
                for cut in stride(from: 0, to: length, by: max(1, length / 7)) {
                    var prefix = bytes.getSlice(at: bytes.readerIndex, length: cut)!
                    #expect(throws: (any Error).self, "\(M.self) v\(version) decoded from \(cut)/\(length) bytes") {
                        _ = try M(from: &prefix, version: version)
                    }
                }
            }
            bytes.clear()
        }
        return samples
    }

    /// The committed generated code is exactly what the generator produces from the committed schemas.
    @Test func committedCodeMatchesGenerator() throws {
        let root = packageRoot()
        let output = try ProtocolCodegen.generate(schemaDirectory: root.appendingPathComponent("schemas/kafka"))
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("codegen-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let srcDir = tmp.appendingPathComponent("Sources"), testDir = tmp.appendingPathComponent("Tests")
        try ProtocolCodegen.write(output, sourcesDirectory: srcDir, testsDirectory: testDir)
        for (generated, committed) in [
            (srcDir, root.appendingPathComponent("Sources/KafkaProtocol/Generated")),
            (testDir, root.appendingPathComponent("Tests/KafkaProtocolTests/Generated")),
        ] {
            let fresh = Set(try FileManager.default.contentsOfDirectory(atPath: generated.path))
            let onDisk = Set(try FileManager.default.contentsOfDirectory(atPath: committed.path).filter { $0.hasSuffix(".swift") })
            #expect(fresh == onDisk, "generated file set differs; run `swift run protocol-codegen`")
            for name in fresh.intersection(onDisk) {
                let a = try String(contentsOf: generated.appendingPathComponent(name), encoding: .utf8)
                let b = try String(contentsOf: committed.appendingPathComponent(name), encoding: .utf8)
                #expect(a == b, "\(committed.lastPathComponent)/\(name) is stale; run `swift run protocol-codegen`")
            }
        }
    }

    /// The vendored schemas are unmodified copies of the shared Kafka schemas when those are present.
    @Test func vendoredSchemasMatchSharedCopy() throws {
        let root = packageRoot()
        let shared = root.deletingLastPathComponent().appendingPathComponent("shared/kafka-protocol/message")
        guard FileManager.default.fileExists(atPath: shared.path) else { return }
        for name in ProtocolCodegen.messageNames {
            let a = try Data(contentsOf: root.appendingPathComponent("schemas/kafka/\(name).json"))
            let b = try Data(contentsOf: shared.appendingPathComponent("\(name).json"))
            #expect(a == b, "schemas/kafka/\(name).json differs from ../shared/kafka-protocol/message")
        }
    }

    @Test func apiVersionsRequestKeepsClassicClientIDInHeaderV2() throws {
        var w = KafkaWriter()
        let header = RequestHeader(apiKey: .apiVersions, apiVersion: 3, correlationID: 7, clientID: "rdkafka")
        header.encode(to: &w, headerVersion: 2)
        var b = w.buffer
        #expect(b.getInteger(at: 8, endianness: .big, as: Int16.self) == 7)  // int16 length, not a varint
        let decoded = try RequestHeader(from: &b) { _, _ in 2 }
        #expect(decoded == header)
    }
}

func packageRoot(file: String = #filePath) -> URL {
    var url = URL(fileURLWithPath: file)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
    }
    fatalError("Package.swift not found above \(file)")
}
