import NIOCore
import KafkaProtocol

/// Idempotent-producer bookkeeping for one partition.
///
/// For each producer id it keeps the current epoch and the metadata of the last five appended batches,
/// which is enough to recognise a retried batch (same epoch and sequence range) and answer it with the
/// offset it was first written at, and to reject gaps and fenced epochs. Owned by ``PartitionLog`` and
/// accessed only under its lock.
public struct ProducerStateTable: Sendable {
    public struct BatchMetadata: Sendable, Equatable {
        public var firstSequence: Int32
        public var lastSequence: Int32
        public var firstOffset: Int64
        public var lastOffset: Int64
        /// Broker time of the append.
        public var timestamp: Int64
    }

    public struct Entry: Sendable, Equatable {
        public var epoch: Int16
        /// Oldest first; at most ``ProducerStateTable/retainedBatches``.
        public var batches: [BatchMetadata]
        public var lastSequence: Int32 { batches.last?.lastSequence ?? -1 }
    }

    public static let retainedBatches = 5

    public private(set) var entries: [Int64: Entry] = [:]

    public init() {}

    public enum Verdict: Equatable, Sendable {
        /// Append the batch.
        case append
        /// Already written: answer with this original metadata and do not append.
        case duplicate(BatchMetadata)
    }

    /// Decides what to do with a batch from `header.producerID` (which must be >= 0).
    public func check(_ header: RecordBatchHeader) throws -> Verdict {
        guard let entry = entries[header.producerID] else { return .append }
        if header.producerEpoch < entry.epoch {
            throw LogError.invalidProducerEpoch(producerID: header.producerID, epoch: header.producerEpoch, current: entry.epoch)
        }
        if header.producerEpoch > entry.epoch {
            guard header.baseSequence == 0 else {
                throw LogError.outOfOrderSequence(producerID: header.producerID, expected: 0, got: header.baseSequence)
            }
            return .append
        }
        if let dup = entry.batches.first(where: { $0.firstSequence == header.baseSequence && $0.lastSequence == header.lastSequence }) {
            return .duplicate(dup)
        }
        guard !entry.batches.isEmpty else { return .append }
        let expected = entry.lastSequence == Int32.max ? 0 : entry.lastSequence + 1
        guard header.baseSequence == expected else {
            throw LogError.outOfOrderSequence(producerID: header.producerID, expected: expected, got: header.baseSequence)
        }
        return .append
    }

    /// Records an appended batch (its offsets already assigned) at broker time `appendTimeMs`.
    /// The broker's clock, not the batch's timestamp, dates the entry: expiry must not depend on
    /// what a producer wrote in its batches.
    public mutating func record(_ header: RecordBatchHeader, appendTimeMs: Int64) {
        guard header.producerID >= 0 else { return }
        let meta = BatchMetadata(firstSequence: header.baseSequence, lastSequence: header.lastSequence,
                                 firstOffset: header.baseOffset, lastOffset: header.lastOffset,
                                 timestamp: appendTimeMs)
        if var e = entries[header.producerID], e.epoch == header.producerEpoch {
            e.batches.append(meta)
            if e.batches.count > Self.retainedBatches { e.batches.removeFirst(e.batches.count - Self.retainedBatches) }
            entries[header.producerID] = e
        } else {
            entries[header.producerID] = Entry(epoch: header.producerEpoch, batches: [meta])
        }
    }

    /// Forgets producers whose last append is older than `maxAgeMs`; returns how many.
    public mutating func expire(nowMs: Int64, maxAgeMs: Int64) -> Int {
        let before = entries.count
        entries = entries.filter { _, e in
            guard let last = e.batches.last else { return false }
            return elapsedMs(since: last.timestamp, now: nowMs) < maxAgeMs
        }
        return before - entries.count
    }

    /// Forgets batches at or after `offset` (after a log truncation).
    public mutating func truncate(from offset: Int64) {
        for (pid, var e) in entries {
            e.batches.removeAll { $0.lastOffset >= offset }
            entries[pid] = e.batches.isEmpty ? nil : e
        }
    }

    // MARK: Snapshot file: "MPS1", i64 offset, i32 count, then per producer
    // i64 id, i16 epoch, i8 n, n × (i32 firstSeq, i32 lastSeq, i64 firstOffset, i64 lastOffset, i64 ts), u32 crc32c.

    public func snapshot(at offset: Int64) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeString("MPS1")
        b.writeInteger(offset, endianness: .big)
        b.writeInteger(Int32(entries.count), endianness: .big)
        for (pid, e) in entries.sorted(by: { $0.key < $1.key }) {
            b.writeInteger(pid, endianness: .big)
            b.writeInteger(e.epoch, endianness: .big)
            b.writeInteger(Int8(e.batches.count))
            for m in e.batches {
                b.writeInteger(m.firstSequence, endianness: .big)
                b.writeInteger(m.lastSequence, endianness: .big)
                b.writeInteger(m.firstOffset, endianness: .big)
                b.writeInteger(m.lastOffset, endianness: .big)
                b.writeInteger(m.timestamp, endianness: .big)
            }
        }
        let crc = CRC32C.checksum(b, at: b.readerIndex, length: b.readableBytes)
        b.writeInteger(crc, endianness: .big)
        return b
    }

    /// Parses a snapshot; nil when the bytes are damaged (the caller then rebuilds from the log).
    public static func load(_ bytes: ByteBuffer) -> (table: ProducerStateTable, offset: Int64)? {
        guard bytes.readableBytes >= 20 else { return nil }
        let body = bytes.readableBytes - 4
        guard CRC32C.checksum(bytes, at: bytes.readerIndex, length: body)
                == bytes.getInteger(at: bytes.readerIndex + body, endianness: .big, as: UInt32.self)
        else { return nil }
        var b = bytes.getSlice(at: bytes.readerIndex, length: body)!
        guard b.readString(length: 4) == "MPS1",
              let offset = b.readInteger(endianness: .big, as: Int64.self),
              let count = b.readInteger(endianness: .big, as: Int32.self)
        else { return nil }
        var t = ProducerStateTable()
        for _ in 0..<max(0, count) {
            guard let pid = b.readInteger(endianness: .big, as: Int64.self),
                  let epoch = b.readInteger(endianness: .big, as: Int16.self),
                  let n = b.readInteger(as: Int8.self)
            else { return nil }
            var batches: [BatchMetadata] = []
            for _ in 0..<max(0, n) {
                guard let fs = b.readInteger(endianness: .big, as: Int32.self),
                      let ls = b.readInteger(endianness: .big, as: Int32.self),
                      let fo = b.readInteger(endianness: .big, as: Int64.self),
                      let lo = b.readInteger(endianness: .big, as: Int64.self),
                      let ts = b.readInteger(endianness: .big, as: Int64.self)
                else { return nil }
                batches.append(BatchMetadata(firstSequence: fs, lastSequence: ls, firstOffset: fo, lastOffset: lo, timestamp: ts))
            }
            t.entries[pid] = Entry(epoch: epoch, batches: batches)
        }
        return (t, offset)
    }
}
