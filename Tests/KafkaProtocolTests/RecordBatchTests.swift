import NIOCore
import Testing
@testable import KafkaProtocol

@Suite("Record batches", .timeLimit(.minutes(2)))
struct RecordBatchTests {
    func sampleBatch(codec: CompressionCodec, count: Int = 50) throws -> ByteBuffer {
        var builder = RecordBatchBuilder(producerID: 17, producerEpoch: 2, baseSequence: 100)
        for i in 0..<count {
            let key: ByteBuffer? = i % 5 == 0 ? nil : ByteBuffer(string: "key-\(i)")
            let headers = i % 3 == 0 ? [RecordHeader(key: "h\(i)", value: ByteBuffer(string: "v")), RecordHeader(key: "n", value: nil)] : []
            builder.append(key: key, value: ByteBuffer(string: String(repeating: "value-\(i) ", count: i % 7 + 1)),
                           headers: headers, timestamp: 1_700_000_000_000 + Int64(i * 3))
        }
        return try builder.build(compression: codec)
    }

    @Test(arguments: [CompressionCodec.none, .gzip])
    func buildValidateAndDecode(_ codec: CompressionCodec) throws {
        var batch = try sampleBatch(codec: codec)
        let header = try RecordBatch.validate(batch, at: batch.readerIndex)
        try RecordBatch.validateForProduce(header)
        #expect(header.recordsCount == 50)
        #expect(header.lastOffsetDelta == 49)
        #expect(header.compression == codec)
        #expect(header.producerID == 17 && header.producerEpoch == 2 && header.baseSequence == 100)
        #expect(header.lastSequence == 149)
        #expect(header.maxTimestamp == 1_700_000_000_000 + 49 * 3)
        RecordBatch.setBaseOffset(1000, in: &batch, at: batch.readerIndex)
        RecordBatch.setPartitionLeaderEpoch(5, in: &batch, at: batch.readerIndex)
        // Offset and epoch are outside the CRC.
        let rewritten = try RecordBatch.validate(batch, at: batch.readerIndex)
        #expect(rewritten.baseOffset == 1000 && rewritten.partitionLeaderEpoch == 5)
        let records = try RecordBatch.records(in: batch, at: batch.readerIndex)
        #expect(records.count == 50)
        for (i, r) in records.enumerated() {
            #expect(r.offset == 1000 + Int64(i))
            #expect(r.timestamp == 1_700_000_000_000 + Int64(i * 3))
            #expect(r.key == (i % 5 == 0 ? nil : ByteBuffer(string: "key-\(i)")))
            #expect(r.value == ByteBuffer(string: String(repeating: "value-\(i) ", count: i % 7 + 1)))
            #expect(r.headers.count == (i % 3 == 0 ? 2 : 0))
        }
    }

    @Test func gzipShrinksRepetitiveData() throws {
        let plain = try sampleBatch(codec: .none), gz = try sampleBatch(codec: .gzip)
        #expect(gz.readableBytes < plain.readableBytes)
    }

    @Test func flippedByteIsDetectedAsCorrupt() throws {
        let batch = try sampleBatch(codec: .none)
        for position in [21, 30, 61, batch.readableBytes - 1] {
            var bad = batch
            let i = bad.readerIndex + position
            bad.setInteger(bad.getInteger(at: i, as: UInt8.self)! ^ 0x40, at: i)
            #expect(throws: KafkaProtocolError.self) { try RecordBatch.validate(bad, at: bad.readerIndex) }
        }
    }

    @Test func wrongCountIsInvalidForProduce() throws {
        var batch = try sampleBatch(codec: .none, count: 3)
        batch.setInteger(Int32(7), at: batch.readerIndex + 57, endianness: .big)
        // Fix the CRC so only the count is wrong.
        let crc = CRC32C.checksum(batch, at: batch.readerIndex + 21, length: batch.readableBytes - 21)
        batch.setInteger(crc, at: batch.readerIndex + 17, endianness: .big)
        let header = try RecordBatch.validate(batch, at: batch.readerIndex)
        #expect(throws: KafkaProtocolError.self) { try RecordBatch.validateForProduce(header) }
    }

    @Test func batchesSplitsAndIgnoresPartialTail() throws {
        var all = ByteBuffer()
        var a = try sampleBatch(codec: .none, count: 3)
        var b = try sampleBatch(codec: .gzip, count: 4)
        all.writeBuffer(&a)
        let bLen = b.readableBytes
        all.writeBuffer(&b)
        var cut = all.getSlice(at: 0, length: all.readableBytes - bLen / 2)!
        #expect(RecordBatch.batches(in: all).count == 2)
        #expect(RecordBatch.batches(in: cut).count == 1)
        cut.clear()
    }

    @Test func logAppendTimeRestampsAndKeepsCRCValid() throws {
        var batch = try sampleBatch(codec: .none, count: 2)
        try RecordBatch.setLogAppendTime(42, in: &batch, at: batch.readerIndex)
        let h = try RecordBatch.validate(batch, at: batch.readerIndex)
        #expect(h.isLogAppendTime && h.maxTimestamp == 42)
        #expect(try RecordBatch.records(in: batch, at: batch.readerIndex).allSatisfy { $0.timestamp == 42 })
    }
}
