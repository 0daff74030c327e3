import NIOCore
import Testing
@testable import KafkaProtocol

@Suite("Primitives", .timeLimit(.minutes(2)))
struct PrimitiveTests {
    @Test(arguments: [Int64(0), 1, -1, 63, -64, 64, 300, -300, Int64(Int32.max), Int64(Int32.min)])
    func varintRoundTrip(_ v: Int64) throws {
        var b = ByteBuffer()
        b.writeVarint(Int32(v))
        #expect(b.readableBytes == varintSize(v))
        #expect(try b.readVarint() == Int32(v))
    }

    @Test(arguments: [Int64(0), -1, 1, Int64.max, Int64.min, 1 << 40, -(1 << 40)])
    func varlongRoundTrip(_ v: Int64) throws {
        var b = ByteBuffer()
        b.writeVarlong(v)
        #expect(b.readableBytes == varintSize(v))
        #expect(try b.readVarlong() == v)
    }

    @Test func zigzagMatchesKafkaEncoding() {
        // Kafka's ByteUtils: 0→00, -1→01, 1→02, -64→7F, 64→80 01.
        for (v, bytes) in [(Int32(0), [UInt8(0)]), (-1, [1]), (1, [2]), (-64, [0x7F]), (64, [0x80, 0x01])] {
            var b = ByteBuffer()
            b.writeVarint(v)
            #expect(Array(b.readableBytesView) == bytes)
        }
    }

    @Test func overlongVarintIsRejected() {
        var b = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        #expect(throws: KafkaProtocolError.malformedVarint) { try b.readUnsignedVarint() }
    }

    @Test func compactAndClassicStrings() throws {
        var w = KafkaWriter()
        w.writeString("héllo", flexible: true)
        try w.writeNullableString(nil, flexible: true, nullable: true)
        w.writeString("abc", flexible: false)
        try w.writeNullableString(nil, flexible: false, nullable: true)
        var r = w.buffer
        #expect(try r.readKafkaString(flexible: true) == "héllo")
        #expect(try r.readKafkaNullableString(flexible: true) == nil)
        #expect(try r.readKafkaString(flexible: false) == "abc")
        #expect(try r.readKafkaNullableString(flexible: false) == nil)
        #expect(r.readableBytes == 0)
        #expect(throws: KafkaProtocolError.nullNotAllowed("string")) {
            try w.writeNullableString(nil, flexible: true, nullable: false)
        }
    }

    @Test func lengthsLargerThanTheFrameAreRejected() {
        var b = ByteBuffer()
        b.writeInteger(Int32(1_000_000), endianness: .big)
        b.writeInteger(UInt8(1))
        #expect(throws: KafkaProtocolError.self) { try b.readKafkaArrayCount(flexible: false) }
        var c = ByteBuffer(bytes: [0x05, 0x61])  // compact string claiming 4 bytes, 1 present
        #expect(throws: KafkaProtocolError.self) { try c.readKafkaString(flexible: true) }
    }

    @Test func uuidRoundTripAndText() throws {
        let u = KafkaUUID(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210)
        var w = KafkaWriter()
        w.writeUUID(u)
        var r = w.buffer
        #expect(try r.readKafkaUUID() == u)
        #expect(u.description == "01234567-89ab-cdef-fedc-ba9876543210")
    }

    @Test func unknownErrorCodesSurvive() {
        let e = ErrorCode(rawValue: 999)
        #expect(e.name == "UNKNOWN_CODE")
        #expect(ErrorCode.notLeaderOrFollower.isRetriable)
        #expect(!ErrorCode.topicAlreadyExists.isRetriable)
    }

    @Test func topicNameValidation() {
        #expect(TopicName("orders.v1_EU-west").validationError == nil)
        #expect(TopicName("").validationError != nil)
        #expect(TopicName("..").validationError != nil)
        #expect(TopicName("a b").validationError != nil)
        #expect(TopicName(String(repeating: "x", count: 250)).validationError != nil)
    }
}
