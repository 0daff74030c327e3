import NIOCore

/// What a broker accepts from producers beyond the batch header: the rules of Kafka's log validator
/// for the records inside a batch.
public struct RecordValidationRules: Sendable, Equatable {
    /// Accepted record timestamps for CreateTime topics (`message.timestamp.before.max.ms` and
    /// `after.max.ms` around the broker's clock); nil for LogAppendTime topics, whose records the
    /// broker stamps itself. A timestamp of -1 (none) is always accepted, as Kafka accepts it.
    public var timestamps: ClosedRange<Int64>?
    /// Every record must have a key (compacted topics).
    public var requireKeys: Bool
    /// Largest decompressed size of one batch's records; a decompression-bomb guard.
    public var maxDecompressedBytes: Int

    public init(timestamps: ClosedRange<Int64>?, requireKeys: Bool, maxDecompressedBytes: Int = 64 << 20) {
        self.timestamps = timestamps
        self.requireKeys = requireKeys
        self.maxDecompressedBytes = maxDecompressedBytes
    }

    /// Bounds `[now - before, now + after]`, saturating at the ends of `Int64` (the defaults are
    /// `Int64.max` before and one hour after, as in Kafka 4).
    public static func timestampWindow(nowMs: Int64, beforeMaxMs: Int64, afterMaxMs: Int64) -> ClosedRange<Int64> {
        let (low, lowOverflow) = nowMs.subtractingReportingOverflow(max(0, beforeMaxMs))
        let (high, highOverflow) = nowMs.addingReportingOverflow(max(0, afterMaxMs))
        return (lowOverflow ? Int64.min : low)...(highOverflow ? Int64.max : high)
    }
}

/// What the broker rewrites in a produced batch before storing it, where Kafka's log validator
/// accepts the batch and repairs it rather than refusing it. Fields the broker owns are the
/// broker's to set: a producer that gets them wrong is not refused.
public struct ProducedBatchRepair: Sendable, Equatable {
    /// The header's `maxTimestamp` becomes this: the largest record timestamp, or -1 when no record
    /// has one. Sarama, for one, sends -1 with timestamped records.
    public var maxTimestamp: Int64?
    /// The records are written again: offset deltas that do not run 0, 1, 2, … become so (Kafka
    /// reassigns inner offsets), and a key, value or header value whose length is negative but not
    /// -1 becomes null with length -1 (Kafka reads any negative length as null; librdkafka cannot
    /// parse the other negatives, so stored as sent they would stall its consumers).
    public var rewriteRecords: Bool
    /// The producer set the LogAppendTime type on a CreateTime topic. Kafka accepts such a batch
    /// with the header's max timestamp as every record's time and stores it as CreateTime; so do we,
    /// writing that time into every record.
    public var logAppendTime: Int64?

    public init(maxTimestamp: Int64? = nil, rewriteRecords: Bool = false, logAppendTime: Int64? = nil) {
        self.maxTimestamp = maxTimestamp
        self.rewriteRecords = rewriteRecords
        self.logAppendTime = logAppendTime
    }

    public var isNeeded: Bool { maxTimestamp != nil || rewriteRecords || logAppendTime != nil }
}

extension RecordBatch {
    /// Walks the records of a produced batch (already CRC-checked) without building `Record` values
    /// and checks what Kafka's validator checks: each record's length fits the batch and its fields
    /// fill it exactly, the count matches `recordsCount` with no bytes left over, header keys are not
    /// null, timestamps are inside the accepted window, keys are present when required, and a
    /// producer sets the LogAppendTime type only where Kafka takes it.
    ///
    /// Returns what the broker must repair before storing the batch (see ``ProducedBatchRepair``):
    /// nothing for a well-formed batch. gzip batches are inflated to be checked (as Kafka does);
    /// batches in codecs this build cannot read have their header timestamps checked instead and are
    /// stored as sent. Throws ``KafkaProtocolError/invalidRecordBatch(_:)`` or
    /// ``KafkaProtocolError/invalidTimestamp(_:)``.
    public static func validateRecords(_ buffer: ByteBuffer, at index: Int, header: RecordBatchHeader,
                                       rules: RecordValidationRules) throws -> ProducedBatchRepair {
        var repair = ProducedBatchRepair()
        func checkWindow(_ ts: Int64, _ what: @autoclosure () -> String) throws {
            if let window = rules.timestamps, ts != -1, !window.contains(ts) {
                throw KafkaProtocolError.invalidTimestamp(
                    "\(what()) \(ts) is outside [\(window.lowerBound), \(window.upperBound)] (message.timestamp.before.max.ms / after.max.ms)")
            }
        }
        if header.isLogAppendTime {
            // Kafka: a LogAppendTime topic refuses the type from a producer, and so does a CreateTime
            // topic when the batch has no time; otherwise the batch's time is every record's.
            guard rules.timestamps != nil, header.maxTimestamp != -1 else {
                throw KafkaProtocolError.invalidTimestamp("the producer set the LogAppendTime timestamp type; the broker stamps it")
            }
            try checkWindow(header.maxTimestamp, "the batch's LogAppendTime timestamp")
            repair.logAppendTime = header.maxTimestamp
        }
        guard header.compression.isSupportedLocally else {
            if !header.isLogAppendTime {
                try checkWindow(header.baseTimestamp, "base timestamp")
                try checkWindow(header.maxTimestamp, "max timestamp")
            }
            return repair
        }
        guard var records = buffer.getSlice(at: index + RecordBatchHeader.size, length: header.totalSize - RecordBatchHeader.size) else {
            throw KafkaProtocolError.truncated("record batch body")
        }
        if header.compression != .none {
            do {
                records = try header.compression.decompress(records, maxSize: rules.maxDecompressedBytes)
            } catch {
                throw KafkaProtocolError.invalidRecordBatch("\(error)")
            }
        }
        var maxTimestamp: Int64 = -1
        let count = Int(header.recordsCount)
        for n in 0..<count {
            let length = Int(try records.readVarint())
            guard length > 0, length <= records.readableBytes, var r = records.readSlice(length: length) else {
                throw KafkaProtocolError.invalidRecordBatch("record \(n) declares \(length) bytes with \(records.readableBytes) left")
            }
            _ = try r.readKafkaInt8()
            let (ts, overflow) = header.baseTimestamp.addingReportingOverflow(try r.readVarlong())
            guard !overflow else { throw KafkaProtocolError.invalidTimestamp("record \(n)'s timestamp overflows") }
            if try r.readVarint() != Int32(n) { repair.rewriteRecords = true }
            if !header.isLogAppendTime {
                try checkWindow(ts, "record \(n)'s timestamp")
                maxTimestamp = max(maxTimestamp, ts)
            }
            let key = try skipVarBytes(&r, "key")
            if key < -1 { repair.rewriteRecords = true }
            if rules.requireKeys && key < 0 {
                throw KafkaProtocolError.invalidRecordBatch("a compacted topic only accepts records with keys")
            }
            if try skipVarBytes(&r, "value") < -1 { repair.rewriteRecords = true }
            let headers = Int(try r.readVarint())
            guard headers >= 0, headers <= r.readableBytes else {
                throw KafkaProtocolError.invalidRecordBatch("record \(n) declares \(headers) headers")
            }
            for _ in 0..<headers {
                guard try skipVarBytes(&r, "header key") >= 0 else {
                    throw KafkaProtocolError.invalidRecordBatch("record \(n) has a header with a null key")
                }
                if try skipVarBytes(&r, "header value") < -1 { repair.rewriteRecords = true }
            }
            guard r.readableBytes == 0 else {
                throw KafkaProtocolError.invalidRecordBatch("record \(n) has \(r.readableBytes) bytes after its last field")
            }
        }
        guard records.readableBytes == 0 else {
            throw KafkaProtocolError.invalidRecordBatch("\(records.readableBytes) bytes follow the \(count) records the batch declares")
        }
        if let time = repair.logAppendTime {
            maxTimestamp = time
        }
        if maxTimestamp != header.maxTimestamp || repair.logAppendTime != nil { repair.maxTimestamp = maxTimestamp }
        return repair
    }

    /// The batch at `index` with `repair` applied (a new buffer; the producer's bytes are not
    /// changed): records rewritten if asked, then `maxTimestamp`, the timestamp type and the CRC.
    /// Producer id, epoch, sequence, codec and the transactional bit stay as sent.
    public static func repaired(_ buffer: ByteBuffer, at index: Int, header: RecordBatchHeader,
                                _ repair: ProducedBatchRepair, maxDecompressedBytes: Int = 64 << 20) throws -> ByteBuffer {
        if !repair.rewriteRecords && repair.logAppendTime == nil, let ts = repair.maxTimestamp {
            // Only the header's max timestamp (every Sarama batch): a copy with the CRC updated
            // from the 8 changed bytes, no pass over the records.
            var out = ByteBufferAllocator().buffer(capacity: header.totalSize)
            out.writeImmutableBuffer(buffer.getSlice(at: index, length: header.totalSize)!)
            try setMaxTimestamp(ts, in: &out, at: out.readerIndex, checksumValid: true)
            return out
        }
        var h = header
        var body = buffer.getSlice(at: index + RecordBatchHeader.size, length: header.totalSize - RecordBatchHeader.size)!
        if repair.rewriteRecords || repair.logAppendTime != nil {
            var plain = try header.compression.decompress(body, maxSize: maxDecompressedBytes)
            if let time = repair.logAppendTime { h.baseTimestamp = time }
            let rewritten = try rewriteRecords(&plain, count: Int(header.recordsCount),
                                               sameTimestamp: repair.logAppendTime != nil)
            body = try header.compression.compress(rewritten)
            h.batchLength = Int32(RecordBatchHeader.size - RecordBatchHeader.logOverhead + body.readableBytes)
        }
        h.attributes &= ~0x8
        if let ts = repair.maxTimestamp { h.maxTimestamp = ts }
        var out = ByteBufferAllocator().buffer(capacity: RecordBatchHeader.size + body.readableBytes)
        h.write(to: &out)
        out.writeImmutableBuffer(body)
        let crc = CRC32C.checksum(out, at: out.readerIndex + RecordBatchHeader.attributesOffset,
                                  length: out.readableBytes - RecordBatchHeader.attributesOffset)
        out.setInteger(crc, at: out.readerIndex + RecordBatchHeader.crcOffset, endianness: .big)
        return out
    }

    /// Writes `count` records (already validated) again with offset deltas 0, 1, 2, …, every
    /// negative length as -1 and, with `sameTimestamp`, every timestamp delta 0; attributes, keys,
    /// values and headers are copied byte for byte.
    private static func rewriteRecords(_ records: inout ByteBuffer, count: Int, sameTimestamp: Bool) throws -> ByteBuffer {
        var out = ByteBufferAllocator().buffer(capacity: records.readableBytes + 8)
        var body = ByteBufferAllocator().buffer(capacity: 256)
        func copyVarBytes(_ r: inout ByteBuffer) throws {
            let n = try r.readVarint()
            guard n >= 0 else { body.writeVarint(-1); return }
            body.writeVarint(n)
            var bytes = r.readSlice(length: Int(n))!
            body.writeBuffer(&bytes)
        }
        for n in 0..<count {
            let length = Int(try records.readVarint())
            var r = records.readSlice(length: length)!
            body.clear()
            body.writeInteger(try r.readKafkaInt8())
            let tsDelta = try r.readVarlong()
            body.writeVarlong(sameTimestamp ? 0 : tsDelta)
            _ = try r.readVarint()
            body.writeVarint(Int32(n))
            try copyVarBytes(&r)
            try copyVarBytes(&r)
            let headers = try r.readVarint()
            body.writeVarint(headers)
            for _ in 0..<headers {
                try copyVarBytes(&r)
                try copyVarBytes(&r)
            }
            out.writeVarint(Int32(body.readableBytes))
            out.writeBuffer(&body)
        }
        return out
    }

    /// Skips a varint-length-prefixed field; returns its length (negative for null).
    private static func skipVarBytes(_ r: inout ByteBuffer, _ what: String) throws -> Int {
        let n = Int(try r.readVarint())
        if n < 0 { return n }
        guard n <= r.readableBytes else { throw KafkaProtocolError.invalidRecordBatch("\(what) of \(n) bytes with \(r.readableBytes) left") }
        r.moveReaderIndex(forwardBy: n)
        return n
    }
}
