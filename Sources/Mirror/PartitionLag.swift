import DequeModule
import KafkaProtocol

/// How far one partition's copy is behind its source, from what the mirror itself sees: the
/// source's offsets from its fetch answers, what was copied from the target's answers. No I/O and
/// no clock of its own: every change takes the time (milliseconds since the epoch) from the
/// caller, so it is tested without sockets or waiting.
///
/// Lag in records is the source's high watermark minus the next source offset to copy. Lag in
/// time is the age of the oldest record not yet copied: its timestamp once it has been fetched;
/// before that, the time a fetch answer first showed a high watermark past it (a lower bound:
/// the record existed then). Each copied batch gives two latencies: dwell (fetched − source timestamp: how long
/// the record sat in the source before the mirror read it) and transfer (copied − fetched: read,
/// sent and acknowledged by the target).
public struct PartitionLag: Sendable, Equatable {
    /// Source high watermark (−1 until a fetch answered).
    public private(set) var sourceHighWatermark: Int64 = -1
    /// Source log start offset (−1 until a fetch answered).
    public private(set) var sourceLogStart: Int64 = -1
    /// Next source offset to copy: everything before it is in the target (−1 until known).
    public private(set) var copiedNext: Int64 = -1
    public private(set) var copiedRecords: Int64 = 0
    public private(set) var copiedBytes: Int64 = 0
    /// When the last record was copied, or the copy was last seen caught up.
    public private(set) var lastProgressAt: Int64?
    /// Source timestamp of the newest copied batch's first record (−1 before one): for the
    /// heartbeats partition, when the last heartbeat that crossed was written.
    public private(set) var newestCopiedTimestamp: Int64 = -1

    private struct Fetched: Sendable, Equatable {
        var firstOffset: Int64
        var nextOffset: Int64
        var timestamp: Int64
        var fetchedAt: Int64
        /// Nothing in the range is copied (control batches, aborted transactions, records that
        /// came from the target): it is done once everything before it is.
        var empty = false
    }
    /// Fetched batches not yet copied, in source order.
    private var pending = Deque<Fetched>()
    /// Each rise of the source's high watermark and when it was first seen, oldest first, for
    /// those past `copiedNext` (the first one dates the oldest record not yet copied).
    private var rises = Deque<Rise>()
    private struct Rise: Sendable, Equatable {
        var highWatermark: Int64
        var seenAt: Int64
    }
    /// Rises kept at most; past it the newest is replaced, which keeps the oldest (the bound
    /// that matters) exact.
    static let maxRises = 256

    public struct Latency: Sendable, Equatable {
        public var dwellMs: Int64
        public var transferMs: Int64
        public init(dwellMs: Int64, transferMs: Int64) {
            self.dwellMs = dwellMs
            self.transferMs = transferMs
        }
    }

    public init() {}

    /// Where copying resumes (the writer reconciled with the target): fetched batches before it
    /// are done, any at or after it will be fetched again.
    public mutating func resume(at next: Int64, now: Int64) {
        copiedNext = next
        pending.removeAll()
        dropRises()
        if lagRecords == 0 { lastProgressAt = now }
    }

    /// A fetch answered: the source's offsets now.
    public mutating func sourceSeen(highWatermark: Int64, logStart: Int64, now: Int64) {
        if logStart >= 0 { sourceLogStart = logStart }
        if highWatermark > sourceHighWatermark {
            sourceHighWatermark = highWatermark
            if highWatermark > copiedNext {
                if rises.count >= Self.maxRises { rises.removeLast() }
                rises.append(Rise(highWatermark: highWatermark, seenAt: now))
            }
        }
        if lagRecords == 0 { lastProgressAt = now }
    }

    /// A batch of source records `firstOffset..<nextOffset` was fetched; `timestamp` is its
    /// oldest record's (−1 when the source has none, as in message format v0).
    public mutating func fetched(firstOffset: Int64, nextOffset: Int64, timestamp: Int64, now: Int64) {
        guard nextOffset > firstOffset, nextOffset > (pending.last?.nextOffset ?? copiedNext) else { return }
        pending.append(Fetched(firstOffset: firstOffset, nextOffset: nextOffset, timestamp: timestamp, fetchedAt: now))
    }

    /// A fetched range `firstOffset..<nextOffset` holds nothing to copy.
    public mutating func skipped(firstOffset: Int64, nextOffset: Int64, now: Int64) {
        guard nextOffset > firstOffset else { return }
        if pending.isEmpty && firstOffset <= copiedNext {
            if nextOffset > copiedNext { copiedNext = nextOffset }
            dropRises()
            if lagRecords == 0 { lastProgressAt = now }
        } else if nextOffset > (pending.last?.nextOffset ?? copiedNext) {
            pending.append(Fetched(firstOffset: firstOffset, nextOffset: nextOffset, timestamp: -1, fetchedAt: now, empty: true))
        }
    }

    /// The target acknowledged the source records before `next`: `records` records, `bytes` bytes.
    /// Returns the latencies of the fetched batches this completes.
    @discardableResult
    public mutating func copied(upTo next: Int64, records: Int, bytes: Int, now: Int64) -> [Latency] {
        guard next > copiedNext else { return [] }
        copiedNext = next
        copiedRecords += Int64(records)
        copiedBytes += Int64(bytes)
        lastProgressAt = now
        var done: [Latency] = []
        while let f = pending.first, f.nextOffset <= copiedNext || (f.empty && f.firstOffset <= copiedNext) {
            pending.removeFirst()
            if f.empty {
                copiedNext = max(copiedNext, f.nextOffset)
                continue
            }
            newestCopiedTimestamp = max(newestCopiedTimestamp, f.timestamp)
            let dwell = f.timestamp >= 0 ? max(0, f.fetchedAt - f.timestamp) : 0
            done.append(Latency(dwellMs: dwell, transferMs: max(0, now - f.fetchedAt)))
        }
        dropRises()
        return done
    }

    /// Records the source holds that are not in the target yet.
    public var lagRecords: Int64 {
        guard sourceHighWatermark >= 0, copiedNext >= 0 else { return 0 }
        // Records removed by retention before they were copied are not waiting any more.
        let from = max(copiedNext, sourceLogStart)
        return max(0, sourceHighWatermark - from)
    }

    /// Age in milliseconds of the oldest record not yet copied; 0 when caught up.
    public func lagMilliseconds(now: Int64) -> Int64 {
        guard lagRecords > 0 else { return 0 }
        let dated = pending.first { !$0.empty }.flatMap { $0.timestamp >= 0 ? $0.timestamp : nil }
        guard let since = [dated, rises.first?.seenAt].compactMap({ $0 }).min() else { return 0 }
        return max(0, now - since)
    }

    /// Forgets rises that are copied: they date nothing that still waits.
    private mutating func dropRises() {
        while let r = rises.first, r.highWatermark <= copiedNext { rises.removeFirst() }
    }
}

/// The last `capacity` latencies of a partition's copied batches, for percentiles.
public struct LatencyWindow: Sendable, Equatable {
    public let capacity: Int
    private var dwell: [Int64] = []
    private var transfer: [Int64] = []
    private var next = 0

    public init(capacity: Int = 1024) {
        self.capacity = max(1, capacity)
    }

    public mutating func add(_ l: PartitionLag.Latency) {
        if dwell.count < capacity {
            dwell.append(l.dwellMs)
            transfer.append(l.transferMs)
        } else {
            dwell[next] = l.dwellMs
            transfer[next] = l.transferMs
        }
        next = (next + 1) % capacity
    }

    public var isEmpty: Bool { transfer.isEmpty }

    /// The `p` quantile (0...1) of the transfer latencies held, in milliseconds; nil when none.
    public func transfer(_ p: Double) -> Int64? { Self.quantile(transfer, p) }
    /// The `p` quantile of the dwell times held, in milliseconds; nil when none.
    public func dwell(_ p: Double) -> Int64? { Self.quantile(dwell, p) }

    static func quantile(_ values: [Int64], _ p: Double) -> Int64? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let rank = Int((Double(sorted.count - 1) * min(1, max(0, p))).rounded())
        return sorted[rank]
    }
}

/// One partition's copy as the mirror sees it at one moment (see ``FlowMirror/lagStatus()``).
public struct PartitionLagStatus: Sendable, Equatable {
    public enum State: String, Sendable {
        /// Copying, or caught up.
        case running
        /// Records wait but none was copied for the flow's stall time.
        case stalled
        /// The writer is reconciling with the target (start, or after a failed write).
        case reconnecting
        /// The last fetch from the partition's source broker failed.
        case sourceUnreachable = "source-unreachable"
        /// Copying stopped on an error that needs an operator (see `stopped`).
        case stopped
    }

    public var source: TopicPartition
    public var target: TopicPartition
    public var sourceHighWatermark: Int64
    public var sourceLogStart: Int64
    /// Next source offset to copy (everything before it is in the target).
    public var copiedNext: Int64
    public var lagRecords: Int64
    /// Age of the oldest record not yet copied, milliseconds; 0 when caught up.
    public var lagMs: Int64
    public var copiedRecords: Int64
    public var copiedBytes: Int64
    public var transferP50Ms: Int64?
    public var transferP99Ms: Int64?
    public var dwellP50Ms: Int64?
    public var lastProgressAt: Int64?
    public var newestCopiedTimestamp: Int64 = -1
    public var stopped: String?
    public var waitingForWriter: Bool
    public var sourceFailing: Bool
    public var state: State = .running

    /// The state these facts amount to at `now` with `stallAfterMs` of patience.
    mutating func classify(now: Int64, stallAfterMs: Int64) {
        if stopped != nil {
            state = .stopped
        } else if sourceFailing {
            state = .sourceUnreachable
        } else if waitingForWriter {
            state = .reconnecting
        } else if lagRecords > 0, now - (lastProgressAt ?? now) >= stallAfterMs {
            state = .stalled
        } else {
            state = .running
        }
    }
}
