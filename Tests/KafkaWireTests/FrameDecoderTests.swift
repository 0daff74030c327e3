import KafkaWire
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

/// The frame decoder under NIO's decoder verifier: whatever way the bytes are split, the frames out
/// are the same, and nothing is left over.
@Suite("Frame decoder", .timeLimit(.minutes(1)))
struct FrameDecoderTests {
    static func frame(_ payload: [UInt8]) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(Int32(payload.count))
        b.writeBytes(payload)
        return b
    }

    @Test func framesComeOutWholeHoweverTheStreamIsSplit() throws {
        let payloads: [[UInt8]] = [Array(repeating: 7, count: 8), Array(0..<200), Array(repeating: 1, count: 4)]
        var pairs: [(ByteBuffer, [ByteBuffer])] = payloads.map { (Self.frame($0), [ByteBuffer(bytes: $0)]) }
        // Several frames in one read come out as several messages.
        var two = Self.frame(payloads[0])
        two.writeImmutableBuffer(Self.frame(payloads[1]))
        pairs.append((two, [ByteBuffer(bytes: payloads[0]), ByteBuffer(bytes: payloads[1])]))
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) {
            KafkaFrameDecoder(minimumFrameSize: 4)
        }
    }

    @Test func aFrameSizeOutsideTheLimitsClosesBeforeBufferingThePayload() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(KafkaFrameDecoder(maximumFrameSize: 1_024)))
        var huge = ByteBuffer()
        huge.writeInteger(Int32(1_025))
        #expect(throws: KafkaFrameError.invalidFrameSize(1_025, maximum: 1_024)) { try channel.writeInbound(huge) }
        let small = EmbeddedChannel(handler: ByteToMessageHandler(KafkaFrameDecoder()))
        #expect(throws: KafkaFrameError.invalidFrameSize(3, maximum: KafkaFrameDecoder.defaultMaximumFrameSize)) {
            try small.writeInbound(Self.frame([1, 2, 3]))
        }
        _ = try? small.finish()
        _ = try? channel.finish()
    }
}
