import KafkaProtocol
import NIOCore

/// Turns the record batches a source partition fetch returned into batches the target accepts from
/// an ordinary producer, and says which source offsets each output record came from. No I/O.
///
/// A batch whose offsets are contiguous (`lastOffsetDelta + 1 == recordsCount`) is copied as bytes
/// (a committed transaction's batch loses its transactional bit) — no decompression. The writer
/// then stamps the producer-owned fields (producer id, epoch, base sequence) with ``stamp(_:inFrame:version:producerID:epoch:sequence:)``,
/// which also recomputes the CRC: outputs are not valid batches before that. Everything else is re-batched record by record with contiguous offsets: batches
/// with gaps (compaction), batches that start before the position (a resume inside a batch),
/// LogAppendTime batches (the stamped time becomes the record's CreateTime, so consumers see the
/// time they saw in the source), messages in the old formats v0 and v1 (a v0 message has no
/// timestamp: −1) and, with identity naming, every batch (it gains a provenance header). Control
/// batches and aborted transactions' batches are dropped.
public struct BatchConverter: Sendable {
    /// Header that lists the regions a record was written in, oldest first, comma-separated.
    public static let provenanceHeader = "meridian.origin"

    /// With identity naming: the source region (appended to the provenance header) and the target
    /// region (records that were already there are dropped).
    public var provenance: (source: String, target: String)?

    public init(provenance: (source: String, target: String)? = nil) {
        self.provenance = provenance
    }

    /// One batch to produce and the source offsets of its records, in order.
    public struct Output: Sendable {
        public var batch: ByteBuffer
        public var recordCount: Int
        /// Source offsets of the records, as runs of consecutive offsets (`first`, `count`).
        public var sourceRuns: [(first: Int64, count: Int64)]
        /// Whether the batch's CRC matches its bytes (a validated source batch passed through), so
        /// stamping can update it from the changed bytes alone instead of a pass over the batch.
        public var checksumValid = false
        /// Timestamp of the batch's first record (−1: none, as in message format v0), which dates
        /// the lag while the batch waits to be written.
        public var timestamp: Int64 = -1
    }

    public struct Result: Sendable {
        public var outputs: [Output]
        /// The source offset to fetch next: past every whole batch seen.
        public var nextPosition: Int64
        /// Records dropped because they came from the target region (identity naming).
        public var droppedAsLoop: Int
    }

    /// An aborted transaction the fetch response listed: records of `producerID` from `firstOffset`
    /// until its abort marker are not copied.
    public struct AbortedTransaction: Sendable, Equatable {
        public var producerID: Int64
        public var firstOffset: Int64
        public init(producerID: Int64, firstOffset: Int64) {
            self.producerID = producerID
            self.firstOffset = firstOffset
        }
    }

    /// Stamps `batch` where it lies in `frame`, a Produce request of `version` for one partition
    /// whose records are `batch`: the batch ends the partition's data, followed only by the
    /// tagged-field counts of the partition, the topic and the request in flexible versions.
    /// When the output's CRC is valid, only the 14 changed bytes are read to update it.
    public static func stamp(_ output: Output, inFrame frame: inout ByteBuffer, version: Int16, producerID: Int64, epoch: Int16, sequence: Int32) throws {
        let batch = output.batch
        let trailer = version >= (ProduceRequest.firstFlexibleVersion ?? Int16.max) ? 3 : 0
        let at = frame.writerIndex - trailer - batch.readableBytes
        guard at > frame.readerIndex,
              frame.getInteger(at: at, as: Int64.self) == batch.getInteger(at: batch.readerIndex, as: Int64.self),
              frame.getInteger(at: at + 8, as: Int32.self) == batch.getInteger(at: batch.readerIndex + 8, as: Int32.self)
        else { throw MirrorError.unsupportedSource("the produce request's layout is not the expected one (version \(version))") }
        try RecordBatch.setProducer(id: producerID, epoch: epoch, baseSequence: sequence, in: &frame, at: at,
                                    checksumValid: output.checksumValid)
    }

    /// Source bytes of plain v0/v1 messages gathered into one batch at most: well under any
    /// `max.message.bytes` a target topic is likely to have.
    static let legacyBatchBytes = 64 << 10

    /// Converts the whole batches of `records` at or after `position`.
    public func convert(_ records: ByteBuffer, from position: Int64, aborted: [AbortedTransaction] = []) throws -> Result {
        var outputs: [Output] = []
        var next = position
        var dropped = 0
        var pendingAborts = aborted.sorted { $0.firstOffset < $1.firstOffset }[...]
        var abortedProducers = Set<Int64>()
        // Plain (uncompressed) v0/v1 messages in a row are gathered into one batch of up to
        // `legacyBatchBytes` of source messages; a compressed one is a batch of its own, as Kafka
        // converts it.
        var legacyRun: [Record] = []
        var legacyRunBytes = 0
        func endLegacyRun() throws {
            if let first = legacyRun.first, let o = try rebatch(legacyRun, from: first.offset, compression: .none, dropped: &dropped) {
                outputs.append(o)
            }
            legacyRun.removeAll()
            legacyRunBytes = 0
        }
        var index = records.readerIndex
        // Whole entries only: a fetch may end with part of one. The magic sits at the same place in
        // a v2 batch and in a v0/v1 message.
        while records.writerIndex - index >= LegacyMessageSet.minimumSize,
              let size = records.getInteger(at: index + 8, as: Int32.self), size > 0,
              Int(size) <= records.writerIndex - index - RecordBatchHeader.logOverhead,
              let magic = records.getInteger(at: index + 16, as: Int8.self)
        {
            if magic < 2 {
                let m = try LegacyMessageSet.message(in: records, at: index)
                index += m.size
                guard m.lastOffset >= next else { continue }
                if m.compression == .none {
                    if legacyRunBytes + m.size > Self.legacyBatchBytes { try endLegacyRun() }
                    legacyRun += m.records
                    legacyRunBytes += m.size
                } else {
                    try endLegacyRun()
                    if let o = try rebatch(m.records, from: next, compression: m.compression, dropped: &dropped) { outputs.append(o) }
                }
                next = m.lastOffset + 1
                continue
            }
            try endLegacyRun()
            guard records.writerIndex - index >= RecordBatchHeader.size else { break }
            let h = try RecordBatchHeader(records, at: index)
            let at = index
            index += h.totalSize
            // Offsets come from another cluster: checked before any arithmetic on them.
            guard h.baseOffset >= 0, h.lastOffsetDelta >= 0, h.baseOffset < Int64.max - Int64(Int32.max) else {
                throw MirrorError.unsupportedSource("batch with base offset \(h.baseOffset) and last offset delta \(h.lastOffsetDelta) cannot be right")
            }
            let batchNext = h.nextOffset
            guard batchNext > next else { continue }
            while let a = pendingAborts.first, a.firstOffset <= h.lastOffset {
                abortedProducers.insert(a.producerID)
                pendingAborts = pendingAborts.dropFirst()
            }
            guard h.magic == 2 else {
                throw MirrorError.unsupportedSource("batch at offset \(h.baseOffset) uses message format v\(h.magic), which no Kafka version writes")
            }
            _ = try RecordBatch.validate(records, at: at)
            if h.isControl {
                abortedProducers.remove(h.producerID)
                next = batchNext
                continue
            }
            if h.isTransactional && abortedProducers.contains(h.producerID) {
                next = batchNext
                continue
            }
            let contiguous = h.recordsCount > 0 && Int64(h.lastOffsetDelta) + 1 == Int64(h.recordsCount)
            if contiguous && h.baseOffset >= next && !h.isLogAppendTime && provenance == nil {
                var out = records.getSlice(at: at, length: h.totalSize)!
                if h.isTransactional { try RecordBatch.clearTransactional(in: &out, at: out.readerIndex, checksumValid: true) }
                outputs.append(Output(batch: out, recordCount: Int(h.recordsCount), sourceRuns: [(h.baseOffset, Int64(h.recordsCount))],
                                      checksumValid: true, timestamp: h.baseTimestamp))
            } else {
                guard h.compression == .none || h.compression.isSupportedLocally else {
                    throw MirrorError.unsupportedSource("batch at offset \(h.baseOffset) needs re-batching (it has offset gaps or LogAppendTime) but is compressed with \(h.compression), which this build cannot decompress")
                }
                let batchRecords = try RecordBatch.records(in: records, at: at)
                if let o = try rebatch(batchRecords, from: next, compression: h.compression, dropped: &dropped) { outputs.append(o) }
            }
            next = batchNext
        }
        try endLegacyRun()
        return Result(outputs: outputs, nextPosition: next, droppedAsLoop: dropped)
    }

    /// `records` (offsets and timestamps absolute, in order) from `position` on, as one batch with
    /// contiguous offsets and CreateTime timestamps, in `compression` where this build can write it.
    private func rebatch(_ records: [Record], from position: Int64, compression: CompressionCodec, dropped: inout Int) throws -> Output? {
        var kept: [Record] = []
        var runs: [(first: Int64, count: Int64)] = []
        for var r in records where r.offset >= position {
            if let p = provenance {
                let existing = r.headers.lastIndex { $0.key == Self.provenanceHeader }
                let chain = existing.flatMap { r.headers[$0].value }.map { String(buffer: $0) } ?? ""
                let regions = chain.split(separator: ",").map(String.init)
                if regions.contains(p.target) {
                    dropped += 1
                    continue
                }
                let value = ByteBuffer(string: (regions.isEmpty ? [p.source] : regions + (regions.last == p.source ? [] : [p.source])).joined(separator: ","))
                if let existing { r.headers[existing].value = value } else { r.headers.append(RecordHeader(key: Self.provenanceHeader, value: value)) }
            }
            if let last = runs.last, last.first + last.count == r.offset {
                runs[runs.count - 1].count += 1
            } else {
                runs.append((r.offset, 1))
            }
            kept.append(r)
        }
        guard let first = kept.first else { return nil }
        for i in kept.indices { kept[i].offset = Int64(i) }
        let header = RecordBatchHeader(baseOffset: 0, attributes: Int16(compression.isSupportedLocally ? compression.rawValue : 0),
                                       lastOffsetDelta: Int32(kept.count - 1), baseTimestamp: first.timestamp)
        let batch = try RecordBatch.rebuild(header, keeping: kept)
        return Output(batch: batch, recordCount: kept.count, sourceRuns: runs, timestamp: first.timestamp)
    }
}

/// Why a mirror cannot copy something, phrased for the operator.
public enum MirrorError: Error, CustomStringConvertible, Equatable {
    case unsupportedSource(String)
    case targetNotEmpty(String)
    case configuration(String)
    /// A write landed elsewhere than planned (another writer was still finishing): reconcile again.
    case targetMoved(String)
    /// The source no longer holds the history that was copied.
    case diverged(String)

    public var description: String {
        switch self {
        case .unsupportedSource(let m): return m
        case .targetNotEmpty(let m): return m
        case .configuration(let m): return m
        case .targetMoved(let m): return m
        case .diverged(let m): return m
        }
    }
}
