import NIOCore

/// Operations on v2 record batches held as bytes.
///
/// Batches are never re-encoded on the broker's hot path: validation reads the header and checks the
/// CRC over the bytes in place; appending rewrites `baseOffset` (and `partitionLeaderEpoch`), which
/// the CRC does not cover.
public enum RecordBatch {
    /// The smallest legal v2 batch: a header and one minimal record.
    public static let minimumSize = RecordBatchHeader.size + 7

    /// Checks the batch starting at absolute index `index` of `buffer`: the length field fits the
    /// buffer, magic is 2, the record count agrees with `lastOffsetDelta`, and the CRC matches.
    /// Returns the header on success.
    public static func validate(_ buffer: ByteBuffer, at index: Int) throws -> RecordBatchHeader {
        let header = try RecordBatchHeader(buffer, at: index)
        guard header.batchLength >= Int32(RecordBatchHeader.size - RecordBatchHeader.logOverhead) else {
            throw KafkaProtocolError.invalidRecordBatch("batch length \(header.batchLength) is smaller than a header")
        }
        guard index + header.totalSize <= buffer.writerIndex else {
            throw KafkaProtocolError.truncated("record batch of \(header.totalSize) bytes")
        }
        guard header.magic == 2 else {
            throw KafkaProtocolError.invalidRecordBatch("magic \(header.magic); only v2 batches (magic 2) are supported")
        }
        let crc = CRC32C.checksum(buffer, at: index + RecordBatchHeader.attributesOffset,
                                  length: header.totalSize - RecordBatchHeader.attributesOffset)
        guard crc == header.crc else {
            throw KafkaProtocolError.corruptRecordBatch(expected: header.crc, actual: crc)
        }
        return header
    }

    /// Checks the producer-facing rules of the header: positive record count that agrees with
    /// `lastOffsetDelta`, not a control or transactional batch, a known codec, and a sequence number
    /// whenever a producer id is set. (The timestamp type depends on the topic:
    /// ``validateRecords(_:at:header:rules:)`` decides it.)
    public static func validateForProduce(_ header: RecordBatchHeader) throws {
        guard header.recordsCount > 0, Int64(header.lastOffsetDelta) + 1 == Int64(header.recordsCount) else {
            throw KafkaProtocolError.invalidRecordBatch(
                "records count \(header.recordsCount) does not match last offset delta \(header.lastOffsetDelta)")
        }
        guard !header.isControl else {
            throw KafkaProtocolError.invalidRecordBatch("clients may not produce control batches")
        }
        guard header.compression.rawValue <= CompressionCodec.zstd.rawValue else {
            throw KafkaProtocolError.invalidRecordBatch("unknown compression codec \(header.compression.rawValue)")
        }
        guard !header.isTransactional else {
            throw KafkaProtocolError.invalidRecordBatch("transactional batches are not supported (transactions are not)")
        }
        if header.producerID >= 0 && header.baseSequence < 0 {
            throw KafkaProtocolError.invalidRecordBatch("producer id \(header.producerID) without a base sequence")
        }
    }

    public static func setBaseOffset(_ offset: Int64, in buffer: inout ByteBuffer, at index: Int) {
        buffer.setInteger(offset, at: index, endianness: .big)
    }

    public static func setPartitionLeaderEpoch(_ epoch: Int32, in buffer: inout ByteBuffer, at index: Int) {
        buffer.setInteger(epoch, at: index + 12, endianness: .big)
    }

    /// Rewrites the producer fields (id, epoch, base sequence) of the batch at `index` and
    /// updates the CRC, which covers them. Used to re-sequence a batch after an epoch bump, and by
    /// the mirror to produce a fetched batch as its own. With `checksumValid` (the CRC matches the
    /// batch as it is) the CRC is updated from the 14 changed bytes alone, not a pass over the batch.
    public static func setProducer(id: Int64, epoch: Int16, baseSequence: Int32, in buffer: inout ByteBuffer, at index: Int,
                                   checksumValid: Bool = false) throws {
        try rewrite(&buffer, batchAt: index, bytesAt: 43, count: 14, checksumValid: checksumValid) { b in
            b.setInteger(id, at: index + 43, endianness: .big)
            b.setInteger(epoch, at: index + 51, endianness: .big)
            b.setInteger(baseSequence, at: index + 53, endianness: .big)
        }
    }

    /// Sets the max timestamp of the batch at `index` and updates the CRC as
    /// ``setProducer(id:epoch:baseSequence:in:at:checksumValid:)`` does.
    public static func setMaxTimestamp(_ timestamp: Int64, in buffer: inout ByteBuffer, at index: Int, checksumValid: Bool = false) throws {
        try rewrite(&buffer, batchAt: index, bytesAt: RecordBatchHeader.maxTimestampOffset, count: 8, checksumValid: checksumValid) { b in
            b.setInteger(timestamp, at: index + RecordBatchHeader.maxTimestampOffset, endianness: .big)
        }
    }

    /// Clears the transactional bit of the batch at `index` (a committed transaction's records
    /// produced as ordinary ones) and updates the CRC as ``setProducer(id:epoch:baseSequence:in:at:checksumValid:)`` does.
    public static func clearTransactional(in buffer: inout ByteBuffer, at index: Int, checksumValid: Bool = false) throws {
        let header = try RecordBatchHeader(buffer, at: index)
        try rewrite(&buffer, batchAt: index, bytesAt: RecordBatchHeader.attributesOffset, count: 2, checksumValid: checksumValid) { b in
            b.setInteger(header.attributes & ~0x10, at: index + RecordBatchHeader.attributesOffset, endianness: .big)
        }
    }

    /// Applies `change` to `count` bytes at `bytesAt` (from the batch start) and sets the CRC:
    /// updated from the changed bytes when the old CRC was valid, else computed over the batch.
    private static func rewrite(_ buffer: inout ByteBuffer, batchAt index: Int, bytesAt offset: Int, count: Int, checksumValid: Bool,
                                _ change: (inout ByteBuffer) -> Void) throws {
        let header = try RecordBatchHeader(buffer, at: index)
        let covered = header.totalSize - RecordBatchHeader.attributesOffset
        let old = checksumValid ? buffer.getBytes(at: index + offset, length: count) : nil
        change(&buffer)
        if let old, let new = buffer.getBytes(at: index + offset, length: count),
           let crc = buffer.getInteger(at: index + RecordBatchHeader.crcOffset, as: UInt32.self),
           let updated = CRC32C.updating(crc, length: covered, changedAt: offset - RecordBatchHeader.attributesOffset, from: old, to: new) {
            buffer.setInteger(updated, at: index + RecordBatchHeader.crcOffset, endianness: .big)
            return
        }
        let crc = CRC32C.checksum(buffer, at: index + RecordBatchHeader.attributesOffset, length: covered)
        buffer.setInteger(crc, at: index + RecordBatchHeader.crcOffset, endianness: .big)
    }

    /// `sequence + increment` as Kafka counts sequences: past `Int32.max` they wrap to 0.
    public static func incrementSequence(_ sequence: Int32, by increment: Int32) -> Int32 {
        sequence > Int32.max - increment ? increment - (Int32.max - sequence) - 1 : sequence + increment
    }

    /// Stamps LogAppendTime: sets the timestamp-type bit and `maxTimestamp`, then recomputes the CRC.
    public static func setLogAppendTime(_ timestamp: Int64, in buffer: inout ByteBuffer, at index: Int) throws {
        let header = try RecordBatchHeader(buffer, at: index)
        buffer.setInteger(header.attributes | 0x8, at: index + RecordBatchHeader.attributesOffset, endianness: .big)
        buffer.setInteger(timestamp, at: index + RecordBatchHeader.maxTimestampOffset, endianness: .big)
        let crc = CRC32C.checksum(buffer, at: index + RecordBatchHeader.attributesOffset,
                                  length: header.totalSize - RecordBatchHeader.attributesOffset)
        buffer.setInteger(crc, at: index + RecordBatchHeader.crcOffset, endianness: .big)
    }

    /// Splits a records payload into the headers and absolute start indexes of its whole batches.
    /// A partial batch at the end (as fetch responses may carry) is ignored.
    public static func batches(in buffer: ByteBuffer) -> [(header: RecordBatchHeader, index: Int)] {
        var result: [(RecordBatchHeader, Int)] = []
        var i = buffer.readerIndex
        while i + RecordBatchHeader.size <= buffer.writerIndex,
              let header = try? RecordBatchHeader(buffer, at: i),
              header.batchLength > 0, i + header.totalSize <= buffer.writerIndex
        {
            result.append((header, i))
            i += header.totalSize
        }
        return result
    }

    /// Decodes the records of the batch at `index`, inflating gzip. Offsets and timestamps are absolute.
    public static func records(in buffer: ByteBuffer, at index: Int) throws -> [Record] {
        var out: [Record] = []
        try forEachRecord(in: buffer, at: index) { out.append($0) }
        return out
    }

    /// Calls `body` with each record of the batch at `index` without collecting them: the consumer's
    /// path, so a record is built once and handed on.
    public static func forEachRecord(in buffer: ByteBuffer, at index: Int, _ body: (Record) throws -> Void) throws {
        let header = try RecordBatchHeader(buffer, at: index)
        guard index + header.totalSize <= buffer.writerIndex else {
            throw KafkaProtocolError.truncated("record batch")
        }
        guard var records = buffer.getSlice(at: index + RecordBatchHeader.size,
                                         length: header.totalSize - RecordBatchHeader.size)
        else { throw KafkaProtocolError.truncated("record batch body") }
        if header.compression != .none {
            records = try header.compression.decompress(records)
        }
        let count = Int(header.recordsCount)
        guard count >= 0, count <= records.readableBytes else {
            throw KafkaProtocolError.invalidRecordBatch("records count \(count) is larger than the batch")
        }
        for _ in 0..<count {
            var r = try Record(decoding: &records, baseOffset: header.baseOffset, baseTimestamp: header.baseTimestamp)
            if header.isLogAppendTime { r.timestamp = header.maxTimestamp }
            try body(r)
        }
    }
}

extension RecordBatch {
    /// A batch holding only `records` (a subset of `header`'s batch, offsets and timestamps absolute),
    /// keeping the base offset, last offset delta, producer fields and codec of the original, so
    /// offsets never change and the batch still ends where it ended. Used by log compaction.
    public static func rebuild(_ header: RecordBatchHeader, keeping records: [Record]) throws -> ByteBuffer {
        var body = ByteBuffer()
        var maxTs = Int64.min
        for r in records {
            let tsDelta = (header.isLogAppendTime ? header.baseTimestamp : r.timestamp) &- header.baseTimestamp
            guard let offDelta = Int32(exactly: r.offset &- header.baseOffset) else {
                throw KafkaProtocolError.invalidRecordBatch("record offset \(r.offset) is not within the batch at \(header.baseOffset)")
            }
            let size = Record.bodySize(timestampDelta: tsDelta, offsetDelta: offDelta, key: r.key, value: r.value, headers: r.headers)
            body.writeVarint(Int32(size))
            body.writeInteger(Int8(0))
            body.writeVarlong(tsDelta)
            body.writeVarint(offDelta)
            Record.writeVarBytes(r.key, to: &body)
            Record.writeVarBytes(r.value, to: &body)
            body.writeVarint(Int32(r.headers.count))
            for h in r.headers {
                body.writeVarint(Int32(h.key.utf8.count))
                body.writeString(h.key)
                Record.writeVarBytes(h.value, to: &body)
            }
            maxTs = max(maxTs, r.timestamp)
        }
        let codec = header.compression.isSupportedLocally ? header.compression : .none
        let payload = try codec.compress(body)
        var h = header
        h.batchLength = Int32(RecordBatchHeader.size - RecordBatchHeader.logOverhead + payload.readableBytes)
        h.recordsCount = Int32(records.count)
        h.attributes = (header.attributes & ~0x7) | Int16(codec.rawValue)
        if !header.isLogAppendTime && !records.isEmpty { h.maxTimestamp = maxTs }
        var out = ByteBufferAllocator().buffer(capacity: RecordBatchHeader.size + payload.readableBytes)
        h.write(to: &out)
        out.writeImmutableBuffer(payload)
        let crc = CRC32C.checksum(out, at: out.readerIndex + RecordBatchHeader.attributesOffset,
                                  length: out.readableBytes - RecordBatchHeader.attributesOffset)
        out.setInteger(crc, at: out.readerIndex + RecordBatchHeader.crcOffset, endianness: .big)
        return out
    }
}
