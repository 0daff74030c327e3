import NIOCore

/// Builds one v2 record batch for producing.
///
/// Records are encoded into a single buffer as they are appended (no per-record objects are kept);
/// ``build(compression:)`` adds the header, compresses if asked, and computes the CRC.
public struct RecordBatchBuilder: Sendable {
    public private(set) var recordCount: Int32 = 0
    public private(set) var firstTimestamp: Int64 = 0
    public private(set) var maxTimestamp: Int64 = -1
    private var records: ByteBuffer
    public var producerID: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32

    public init(capacity: Int = 16 * 1024, producerID: Int64 = -1, producerEpoch: Int16 = -1, baseSequence: Int32 = -1) {
        records = ByteBufferAllocator().buffer(capacity: capacity)
        self.producerID = producerID
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
    }

    /// Bytes the batch will take uncompressed.
    public var estimatedSize: Int { RecordBatchHeader.size + records.readableBytes }
    public var isEmpty: Bool { recordCount == 0 }

    public mutating func append(key: ByteBuffer?, value: ByteBuffer?, headers: [RecordHeader] = [], timestamp: Int64) {
        if recordCount == 0 { firstTimestamp = timestamp }
        let tsDelta = timestamp &- firstTimestamp
        let offDelta = recordCount
        let size = Record.bodySize(timestampDelta: tsDelta, offsetDelta: offDelta, key: key, value: value, headers: headers)
        records.writeVarint(Int32(size))
        records.writeInteger(Int8(0))
        records.writeVarlong(tsDelta)
        records.writeVarint(offDelta)
        Record.writeVarBytes(key, to: &records)
        Record.writeVarBytes(value, to: &records)
        records.writeVarint(Int32(headers.count))
        for h in headers {
            records.writeVarint(Int32(h.key.utf8.count))
            records.writeString(h.key)
            Record.writeVarBytes(h.value, to: &records)
        }
        recordCount += 1
        if recordCount == 1 || timestamp > maxTimestamp { maxTimestamp = timestamp }
    }

    /// The finished batch with baseOffset 0 (the broker assigns the real one).
    public func build(compression: CompressionCodec = .none) throws -> ByteBuffer {
        precondition(recordCount > 0, "a record batch needs at least one record")
        let body = try compression.compress(records)
        var out = ByteBufferAllocator().buffer(capacity: RecordBatchHeader.size + body.readableBytes)
        let header = RecordBatchHeader(
            baseOffset: 0,
            batchLength: Int32(RecordBatchHeader.size - RecordBatchHeader.logOverhead + body.readableBytes),
            partitionLeaderEpoch: -1, magic: 2, crc: 0,
            attributes: Int16(compression.rawValue),
            lastOffsetDelta: recordCount - 1,
            baseTimestamp: firstTimestamp, maxTimestamp: maxTimestamp,
            producerID: producerID, producerEpoch: producerEpoch, baseSequence: baseSequence,
            recordsCount: recordCount)
        header.write(to: &out)
        out.writeImmutableBuffer(body)
        let crc = CRC32C.checksum(out, at: out.readerIndex + RecordBatchHeader.attributesOffset,
                                  length: out.readableBytes - RecordBatchHeader.attributesOffset)
        out.setInteger(crc, at: out.readerIndex + RecordBatchHeader.crcOffset, endianness: .big)
        return out
    }
}
