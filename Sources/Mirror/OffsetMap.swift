import Foundation

/// A stretch of source offsets copied to consecutive target offsets: source `src + i` is target
/// `tgt + i` for `0 ≤ i < count`. Runs are what the mapping stores — one per stretch without gaps,
/// not one per record — and what an intent declares before the records are written.
public struct OffsetRun: Codable, Sendable, Equatable {
    public var src: Int64
    public var tgt: Int64
    public var count: Int64
    /// The source partition's leader epoch when the run was copied.
    public var epoch: Int32

    public init(src: Int64, tgt: Int64, count: Int64, epoch: Int32 = -1) {
        self.src = src
        self.tgt = tgt
        self.count = count
        self.epoch = epoch
    }

    public var srcEnd: Int64 { src + count }
    public var tgtEnd: Int64 { tgt + count }
}

/// The exact source → target offset mapping of one mirrored partition, as ordered runs.
///
/// Invariant: runs are ordered and increasing in both source and target offsets and do not overlap.
/// A value type owned by whoever copies or translates the partition.
public struct PartitionOffsetMap: Sendable, Equatable {
    public private(set) var runs: [OffsetRun] = []

    public init(runs: [OffsetRun] = []) {
        self.runs = runs.sorted { $0.src < $1.src }
    }

    /// The target offset after the last copied record (nil when nothing was copied).
    public var targetEnd: Int64? { runs.last?.tgtEnd }
    /// The source offset after the last copied record.
    public var sourceEnd: Int64? { runs.last?.srcEnd }

    /// Adds `count` records copied from `src` to `tgt`, extending the last run when both sides
    /// continue it. Returns the run as it now stands (what is stored, keyed by its `src`).
    /// Throws when the run would not follow the last one on both sides (the source handed back
    /// offsets that go backwards).
    @discardableResult
    public mutating func append(src: Int64, tgt: Int64, count: Int64, epoch: Int32 = -1) throws -> OffsetRun {
        guard count > 0, src >= 0, tgt >= 0 else { throw MirrorError.unsupportedSource("a run of \(count) records at source \(src), target \(tgt)") }
        if var last = runs.last, last.srcEnd == src, last.tgtEnd == tgt, last.epoch == epoch {
            last.count += count
            runs[runs.count - 1] = last
            return last
        }
        if let last = runs.last, src < last.srcEnd || tgt < last.tgtEnd {
            throw MirrorError.unsupportedSource("source offset \(src) does not follow \(last.srcEnd - 1), the last one copied")
        }
        let run = OffsetRun(src: src, tgt: tgt, count: count, epoch: epoch)
        runs.append(run)
        return run
    }

    /// Keeps only what lies below target offset `end` (what the target log really holds). Returns
    /// the runs that were shortened (to store again) and the runs dropped (to delete).
    public mutating func truncate(targetEnd end: Int64) -> (shortened: [OffsetRun], removed: [OffsetRun]) {
        var shortened: [OffsetRun] = []
        var removed: [OffsetRun] = []
        while let last = runs.last, last.tgtEnd > end {
            if last.tgt >= end {
                removed.append(last)
                runs.removeLast()
            } else {
                let kept = OffsetRun(src: last.src, tgt: last.tgt, count: end - last.tgt, epoch: last.epoch)
                runs[runs.count - 1] = kept
                shortened.append(kept)
            }
        }
        return (shortened, removed)
    }

    /// The target offset a consumer committed at source offset `g` resumes from: the target offset
    /// of the first copied record at or after `g`; past everything copied, the end of what was
    /// copied. Nil when nothing was copied.
    public func translate(_ g: Int64) -> Int64? {
        guard let last = runs.last else { return nil }
        if g >= last.srcEnd { return last.tgtEnd }
        // First run whose end is beyond g.
        var lo = 0, hi = runs.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if runs[mid].srcEnd > g { hi = mid } else { lo = mid + 1 }
        }
        let r = runs[lo]
        return g <= r.src ? r.tgt : r.tgt + (g - r.src)
    }

    /// The source offset of the record at target offset `t`, if the mirror copied it.
    public func sourceOffset(ofTarget t: Int64) -> Int64? {
        for r in runs where t >= r.tgt && t < r.tgtEnd { return r.src + (t - r.tgt) }
        return nil
    }
}
