import Foundation
import FileLayer
import KafkaProtocol
import NIOCore

/// Log compaction for `cleanup.policy=compact` (and `compact,delete`).
///
/// A pass keeps, in every closed segment, only the latest record of each key, and drops tombstones
/// (null values) whose batch is older than `delete.retention.ms`. Offsets never change: a rewritten
/// batch keeps its base offset and last offset delta, so the gaps are visible to readers as
/// missing offsets. The active segment is never touched, nor segments younger than
/// `min.compaction.lag.ms`.
///
/// The pass reads and writes outside the log's lock (into `<dir>/.cleaning/`), so produce and fetch
/// continue; only the final swap of segment objects and file names takes the lock. A fetch that
/// already holds an old segment file keeps reading it: the open descriptor outlives the rename.
extension PartitionLog {
    public struct CleaningResult: Sendable, Equatable {
        public var segments: Int
        public var bytesBefore: Int64
        public var bytesAfter: Int64
        public var recordsRemoved: Int
        public var tombstonesRemoved: Int
    }

    static let cleanerCheckpointFile = "cleaner-offset-checkpoint"

    /// Offset up to which the log has been compacted (the start of its dirty part).
    public var cleanerCheckpoint: Int64 {
        let text = try? fs.readText("\(directory)/\(Self.cleanerCheckpointFile)")
        return text.flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
    }

    /// Share of the cleanable bytes not compacted yet; the cleaner runs when it reaches `min.cleanable.dirty.ratio`.
    public func dirtyRatio(nowMs: Int64) -> Double {
        let checkpoint = cleanerCheckpoint
        return lock.withLock {
            let cleanable = cleanableSegmentsLocked(nowMs: nowMs)
            let total = cleanable.reduce(Int64(0)) { $0 + $1.size }
            let dirty = cleanable.filter { $0.baseOffset >= checkpoint }.reduce(Int64(0)) { $0 + $1.size }
            return total == 0 ? 0 : Double(dirty) / Double(total)
        }
    }

    /// Closed segments old enough for `min.compaction.lag.ms`, oldest first (a contiguous prefix).
    private func cleanableSegmentsLocked(nowMs: Int64) -> [LogSegment] {
        var out: [LogSegment] = []
        for seg in segments.dropLast() {
            if seg.maxTimestamp >= 0 && elapsedMs(since: seg.maxTimestamp, now: nowMs) < _config.minCompactionLagMs { break }
            out.append(seg)
        }
        return out
    }

    /// Compacts the log if it is a compacted topic with enough dirty data; returns what it did, or
    /// nil when there was nothing to do. `force` ignores the dirty ratio.
    @discardableResult
    public func compact(nowMs: Int64, force: Bool = false) throws -> CleaningResult? {
        let checkpoint = cleanerCheckpoint
        let (config, targets, directory): (LogConfig, [LogSegment], String) = lock.withLock {
            guard !closed, _config.compact else { return (_config, [], self.directory) }
            return (_config, cleanableSegmentsLocked(nowMs: nowMs), self.directory)
        }
        guard !targets.isEmpty else { return nil }
        var dirty = targets.filter { $0.baseOffset >= checkpoint || $0.nextOffset > checkpoint }
        if dirty.isEmpty && force { dirty = targets }
        guard !dirty.isEmpty else { return nil }
        if !force {
            let total = targets.reduce(Int64(0)) { $0 + $1.size }
            let dirtyBytes = dirty.reduce(Int64(0)) { $0 + $1.size }
            guard total > 0, Double(dirtyBytes) / Double(total) >= config.minCleanableDirtyRatio else { return nil }
        }

        // 1. Latest offset of every key in the dirty part.
        var latest: [ByteBuffer: Int64] = [:]
        for seg in dirty {
            try forEachBatch(seg) { header, bytes, index in
                guard !header.isControl, header.compression.isSupportedLocally else { return }
                for r in try RecordBatch.records(in: bytes, at: index) {
                    if let k = r.key { latest[k] = r.offset }
                }
            }
        }

        // 2. Rewrite every cleanable segment into the staging directory.
        let staging = "\(directory)/.cleaning"
        try fs.removeDirectory(staging)
        var result = CleaningResult(segments: 0, bytesBefore: 0, bytesAfter: 0, recordsRemoved: 0, tombstonesRemoved: 0)
        var rebuilt: [(old: LogSegment, new: LogSegment?)] = []
        for seg in targets {
            var out = ByteBuffer()
            var changed = false
            try forEachBatch(seg) { header, bytes, index in
                let whole = bytes.getSlice(at: index, length: header.totalSize)!
                guard !header.isControl, header.compression.isSupportedLocally else {
                    out.writeImmutableBuffer(whole)
                    return
                }
                let records = try RecordBatch.records(in: bytes, at: index)
                let tombstoneExpired = elapsedMs(since: header.maxTimestamp, now: nowMs) > config.deleteRetentionMs
                var keep: [Record] = []
                for r in records {
                    guard let k = r.key else { keep.append(r); continue }
                    if let newest = latest[k], newest != r.offset {
                        result.recordsRemoved += 1
                        continue
                    }
                    if r.value == nil && tombstoneExpired {
                        result.tombstonesRemoved += 1
                        continue
                    }
                    keep.append(r)
                }
                if keep.count == records.count {
                    out.writeImmutableBuffer(whole)
                } else {
                    changed = true
                    if !keep.isEmpty { out.writeImmutableBuffer(try RecordBatch.rebuild(header, keeping: keep)) }
                }
            }
            result.bytesBefore += seg.size
            result.bytesAfter += Int64(out.readableBytes)
            guard changed else { continue }
            result.segments += 1
            if out.readableBytes == 0 {
                rebuilt.append((seg, nil))
            } else {
                rebuilt.append((seg, try LogSegment.build(fs: fs, directory: staging, baseOffset: seg.baseOffset, data: out,
                                                          config: config, nowMs: nowMs)))
            }
        }

        // 3. Swap, unless retention or truncation changed the segment list meanwhile.
        let newCheckpoint = targets.last!.nextOffset
        let swapped: Bool = try lock.withLock {
            guard !closed, self.directory == directory else { return false }
            for (old, _) in rebuilt where !segments.contains(where: { $0 === old }) { return false }
            for (old, new) in rebuilt {
                let i = segments.firstIndex { $0 === old }!
                if let new {
                    try new.moveFiles(into: directory)
                    segments[i] = new
                } else if i > 0 || segments.count > 1 {
                    old.deleteFiles()
                    segments.remove(at: i)
                }
            }
            return true
        }
        if swapped { try fs.syncDirectory(directory) }
        try fs.removeDirectory(staging)
        guard swapped else { return nil }
        try fs.writeAtomically("\(newCheckpoint)\n", to: "\(directory)/\(Self.cleanerCheckpointFile)")
        if result.segments > 0 {
            logger.info("compacted log", metadata: [
                "segments": "\(result.segments)", "bytes_before": "\(result.bytesBefore)", "bytes_after": "\(result.bytesAfter)",
                "records_removed": "\(result.recordsRemoved)", "tombstones_removed": "\(result.tombstonesRemoved)",
            ])
        }
        return result
    }

    /// Calls `body` with every whole batch of a (closed, immutable) segment, read in chunks.
    private func forEachBatch(_ seg: LogSegment, _ body: (RecordBatchHeader, ByteBuffer, Int) throws -> Void) throws {
        var pos: Int64 = 0
        let size = seg.size
        while pos < size {
            let chunk = try seg.log.read(at: pos, length: Int(min(Int64(8 << 20), size - pos)))
            var consumed = 0
            for (h, i) in RecordBatch.batches(in: chunk) {
                try body(h, chunk, i)
                consumed = i - chunk.readerIndex + h.totalSize
            }
            if consumed == 0 {
                // A batch larger than the chunk: read it whole.
                let one = try seg.log.read(at: pos, length: Int(try seg.batchSize(at: pos)))
                guard let (h, i) = RecordBatch.batches(in: one).first else { break }
                try body(h, one, i)
                consumed = h.totalSize
            }
            pos += Int64(consumed)
        }
    }
}
