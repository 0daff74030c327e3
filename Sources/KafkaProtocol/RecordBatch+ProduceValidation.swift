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

extension RecordBatch {
    /// Walks the records of a produced batch (already CRC-checked) without building `Record` values
    /// and checks what Kafka's validator checks: each record's length fits the batch, offset deltas
    /// run 0, 1, 2, … up to `lastOffsetDelta`, the count matches `recordsCount` with no bytes left
    /// over, header keys are not null, timestamps are inside the accepted window, keys are present
    /// when required, and `maxTimestamp` is the largest record timestamp.
    ///
    /// gzip batches are inflated to be checked (as Kafka does); batches in codecs this build cannot
    /// read only have their header timestamps checked. Throws ``KafkaProtocolError/invalidRecordBatch(_:)``
    /// or ``KafkaProtocolError/invalidTimestamp(_:)``.
    public static func validateRecords(_ buffer: ByteBuffer, at index: Int, header: RecordBatchHeader,
                                       rules: RecordValidationRules) throws {
        if let window = rules.timestamps, !header.isLogAppendTime {
            for (what, ts) in [("base timestamp", header.baseTimestamp), ("max timestamp", header.maxTimestamp)]
            where ts != -1 && !window.contains(ts) {
                throw KafkaProtocolError.invalidTimestamp(
                    "\(what) \(ts) is outside [\(window.lowerBound), \(window.upperBound)] (message.timestamp.before.max.ms / after.max.ms)")
            }
        }
        guard header.compression.isSupportedLocally else { return }
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
        var maxTimestamp = Int64.min
        let count = Int(header.recordsCount)
        for expectedDelta in 0..<count {
            let length = Int(try records.readVarint())
            guard length > 0, length <= records.readableBytes, var r = records.readSlice(length: length) else {
                throw KafkaProtocolError.invalidRecordBatch("record \(expectedDelta) declares \(length) bytes with \(records.readableBytes) left")
            }
            _ = try r.readKafkaInt8()
            let (ts, overflow) = header.baseTimestamp.addingReportingOverflow(try r.readVarlong())
            guard !overflow else { throw KafkaProtocolError.invalidTimestamp("record \(expectedDelta)'s timestamp overflows") }
            let delta = try r.readVarint()
            guard delta == Int32(expectedDelta) else {
                throw KafkaProtocolError.invalidRecordBatch("record \(expectedDelta) has offset delta \(delta); deltas must run 0, 1, 2, …")
            }
            if let window = rules.timestamps, !header.isLogAppendTime, ts != -1, !window.contains(ts) {
                throw KafkaProtocolError.invalidTimestamp(
                    "record \(expectedDelta)'s timestamp \(ts) is outside [\(window.lowerBound), \(window.upperBound)] (message.timestamp.before.max.ms / after.max.ms)")
            }
            maxTimestamp = max(maxTimestamp, ts)
            let keyLength = try skipVarBytes(&r, "key")
            if rules.requireKeys && keyLength < 0 {
                throw KafkaProtocolError.invalidRecordBatch("a compacted topic only accepts records with keys")
            }
            _ = try skipVarBytes(&r, "value")
            let headers = Int(try r.readVarint())
            guard headers >= 0, headers <= r.readableBytes else {
                throw KafkaProtocolError.invalidRecordBatch("record \(expectedDelta) declares \(headers) headers")
            }
            for _ in 0..<headers {
                guard try skipVarBytes(&r, "header key") >= 0 else {
                    throw KafkaProtocolError.invalidRecordBatch("record \(expectedDelta) has a header with a null key")
                }
                _ = try skipVarBytes(&r, "header value")
            }
            guard r.readableBytes == 0 else {
                throw KafkaProtocolError.invalidRecordBatch("record \(expectedDelta) has \(r.readableBytes) bytes after its last field")
            }
        }
        guard records.readableBytes == 0 else {
            throw KafkaProtocolError.invalidRecordBatch("\(records.readableBytes) bytes follow the \(count) records the batch declares")
        }
        if !header.isLogAppendTime && count > 0 && maxTimestamp != header.maxTimestamp {
            throw KafkaProtocolError.invalidRecordBatch(
                "max timestamp \(header.maxTimestamp) in the batch header differs from the largest record timestamp \(maxTimestamp)")
        }
    }

    /// Skips a varint-length-prefixed field; returns its length (-1 for null).
    ///
    /// Only -1 means null. Kafka's Java reader takes any negative length as null, but librdkafka
    /// fails to parse the batch and fetches it again forever, so a stored record with a length
    /// of, say, -22 would stall every librdkafka consumer of the partition: it is refused here.
    private static func skipVarBytes(_ r: inout ByteBuffer, _ what: String) throws -> Int {
        let n = Int(try r.readVarint())
        if n == -1 { return -1 }
        guard n >= 0 else { throw KafkaProtocolError.invalidRecordBatch("\(what) has length \(n); only -1 (null) may be negative") }
        guard n <= r.readableBytes else { throw KafkaProtocolError.invalidRecordBatch("\(what) of \(n) bytes with \(r.readableBytes) left") }
        r.moveReaderIndex(forwardBy: n)
        return n
    }
}
