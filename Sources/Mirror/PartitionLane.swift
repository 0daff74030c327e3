import DequeModule
import Foundation
import KafkaProtocol
import NIOConcurrencyHelpers

/// The hand-over point between the flow's fetch loop and one partition's writer.
///
/// The fetch loop reads `fetchPosition`, fetches, converts and ``offer(_:)``s the result; the
/// writer ``take()``s chunks in order. A reconcile (start, or after a failed write) bumps the
/// generation and sets a new position, so chunks fetched for the old position are dropped.
/// Guarded by a lock; neither side holds it across a wait.
final class PartitionLane: @unchecked Sendable {
    let source: TopicPartition
    let target: TopicPartition
    let key: OffsetMapStore.PartitionKey
    /// Fetched bytes queued before the lane stops offering itself for fetches.
    let maxQueued: Int
    /// Called (outside the lock) when the fetch loop may have something new to do for this lane:
    /// a chunk was taken (`true` when that brought the queue back under `maxQueued`) or the
    /// writer set a new position.
    private let wake: @Sendable (_ room: Bool) -> Void

    struct Chunk {
        var generation: Int
        var outputs: [BatchConverter.Output]
        var bytes: Int
        var epoch: Int32
        /// The fetch response the batches are slices of: counted against the flow's buffer
        /// budget until the last chunk holding it is gone.
        var response: FetchedResponse? = nil
    }

    /// A fetch response held in memory by the chunks made from it (they are slices of it, not
    /// copies). `release` runs when the last of them is dropped.
    final class FetchedResponse: Sendable {
        let bytes: Int
        private let release: @Sendable (Int) -> Void

        init(bytes: Int, release: @escaping @Sendable (Int) -> Void) {
            self.bytes = bytes
            self.release = release
        }

        deinit { release(bytes) }
    }

    private let lock = NIOLock()
    private var generation = 0
    /// Next source offset to fetch; nil until the writer has reconciled.
    private var position: Int64?
    private var queue = Deque<Chunk>()
    private var queued = 0
    private var waiter: CheckedContinuation<Chunk?, Never>?
    private var closed = false
    private var _stopped: String?
    private var _map = PartitionOffsetMap()
    private var _targetEnd: Int64 = 0
    private var _sourceEnd: Int64 = -1
    private var _copied = 0
    private var _fetchBytes: Int32 = 0
    private var lag = PartitionLag()
    private var _sourceFailing = false
    private var latencies = LatencyWindow()
    /// Milliseconds since the epoch, for lag in time (injected by tests).
    let clock: @Sendable () -> Int64

    init(source: TopicPartition, target: TopicPartition, flow: String, maxQueued: Int = 16 << 20,
         clock: @escaping @Sendable () -> Int64 = PartitionLane.wallClockMs,
         wake: @escaping @Sendable (_ room: Bool) -> Void = { _ in }) {
        self.source = source
        self.target = target
        self.maxQueued = maxQueued
        self.clock = clock
        self.wake = wake
        key = OffsetMapStore.PartitionKey(flow: flow, topic: source.topic, partition: source.partition)
    }

    enum FetchState {
        /// Fetch from `position` for `generation`; `caughtUp` when the last fetch reached the
        /// source's high watermark (a fetch now would likely wait for new records).
        case ready(position: Int64, generation: Int, caughtUp: Bool)
        /// The writer is behind: `maxQueued` bytes wait for it.
        case full
        /// Paused, stopped or reconciling.
        case idle
    }

    var fetchState: FetchState {
        lock.withLock {
            guard !closed, _stopped == nil, let position else { return .idle }
            guard queued < maxQueued else { return .full }
            return .ready(position: position, generation: generation, caughtUp: _sourceEnd >= 0 && position >= _sourceEnd)
        }
    }

    var hasQueued: Bool { lock.withLock { !queue.isEmpty } }

    /// Queues converted batches fetched at `position` for `generation` and moves the fetch
    /// position to `next`; a stale fetch (position moved since) is dropped.
    /// `lastStable` (read_committed: the end a consumer may read, −1 if not given) and `logStart`
    /// feed the lag.
    func offer(_ chunk: Chunk?, generation fetched: Int, fetchedAt position: Int64, next: Int64, highWatermark: Int64,
               lastStable: Int64 = -1, logStart: Int64 = -1) {
        let now = clock()
        let handOver: (CheckedContinuation<Chunk?, Never>, Chunk)? = lock.withLock {
            guard fetched == generation, self.position == position else { return nil }
            self.position = next
            _sourceEnd = max(_sourceEnd, highWatermark)
            lag.sourceSeen(highWatermark: lastStable >= 0 ? min(lastStable, highWatermark) : highWatermark, logStart: logStart, now: now)
            var end = position
            for o in chunk?.outputs ?? [] {
                guard let first = o.sourceRuns.first, let last = o.sourceRuns.last else { continue }
                if first.first > end { lag.skipped(firstOffset: end, nextOffset: first.first, now: now) }
                end = last.first + last.count
                lag.fetched(firstOffset: first.first, nextOffset: end, timestamp: o.timestamp, now: now)
            }
            lag.skipped(firstOffset: end, nextOffset: next, now: now)
            guard let chunk else { return nil }
            if let w = waiter {
                waiter = nil
                return (w, chunk)
            }
            queue.append(chunk)
            queued += chunk.bytes
            return nil
        }
        if let (w, c) = handOver { w.resume(returning: c) }
    }

    /// Bytes the next fetch of this partition asks for (0 until a fetch came back: the base size).
    var fetchBytes: Int32 { lock.withLock { _fetchBytes } }

    /// Adapts the fetch size to what came back: doubled (up to `max`) while fetches return at
    /// least three quarters of what they asked for, halved (down to `base`) when they return less
    /// than a quarter. Over a long round trip a busy partition thus asks for what fills it.
    func fetched(_ bytes: Int, asked: Int32, base: Int32, max: Int32) {
        lock.withLock {
            let current = Swift.max(_fetchBytes, base)
            if bytes >= Int(asked) / 4 * 3 {
                _fetchBytes = Swift.min(max, current <= max / 2 ? current * 2 : max)
            } else if bytes < Int(asked) / 4 {
                _fetchBytes = Swift.max(base, current / 2)
            } else {
                _fetchBytes = current
            }
        }
    }

    /// Jumps the fetch position (the source no longer has the old one) without a new generation.
    func move(from position: Int64, to newPosition: Int64) {
        lock.withLock { if self.position == position { self.position = newPosition } }
    }

    /// The next chunk for the writer, waiting for one; nil once closed.
    func take() async -> Chunk? {
        await withCheckedContinuation { (c: CheckedContinuation<Chunk?, Never>) in
            let ready: (Chunk?, room: Bool)? = lock.withLock {
                if closed { return (nil, false) }
                if let first = queue.popFirst() {
                    let full = queued >= maxQueued
                    queued -= first.bytes
                    return (first, full && queued < maxQueued)
                }
                waiter = c
                return nil
            }
            if let ready {
                c.resume(returning: ready.0)
                if ready.0 != nil { wake(ready.room) }
            }
        }
    }

    /// Queued chunks of `generation` (older ones are dropped) up to about `maxBytes`, without waiting.
    func takeMore(generation wanted: Int, maxBytes: Int) -> [Chunk] {
        let (more, room): ([Chunk], Bool) = lock.withLock {
            var taken: [Chunk] = []
            var bytes = 0
            let full = queued >= maxQueued
            while let first = queue.first, bytes < maxBytes {
                queue.removeFirst()
                queued -= first.bytes
                if first.generation == wanted {
                    taken.append(first)
                    bytes += first.bytes
                }
            }
            return (taken, full && queued < maxQueued)
        }
        if !more.isEmpty { wake(room) }
        return more
    }

    /// Starts a new generation fetching from `position`: queued chunks are dropped.
    func restart(at position: Int64, map: PartitionOffsetMap, targetEnd: Int64) -> Int {
        let now = clock()
        let g = lock.withLock {
            generation += 1
            self.position = position
            lag.resume(at: position, now: now)
            queue.removeAll()
            queued = 0
            _map = map
            _targetEnd = targetEnd
            return generation
        }
        wake(true)
        return g
    }

    /// Stops fetching until the writer reconciles again.
    func pause() {
        lock.withLock { position = nil }
    }

    /// A write landed: the mapping and target end after it, and the source records it copied
    /// (up to `sourceNext`, `bytes` bytes).
    func written(map: PartitionOffsetMap, targetEnd: Int64, records: Int, sourceNext: Int64?, bytes: Int) {
        let now = clock()
        lock.withLock {
            _map = map
            _targetEnd = targetEnd
            _copied += records
            if let sourceNext {
                for l in lag.copied(upTo: sourceNext, records: records, bytes: bytes, now: now) { latencies.add(l) }
            }
        }
    }

    /// Whether the last fetch of this partition reached its source broker.
    func sourceReachable(_ ok: Bool) {
        lock.withLock { _sourceFailing = !ok }
    }

    /// Where this partition's copy stands now.
    func lagStatus() -> PartitionLagStatus {
        let now = clock()
        return lock.withLock {
            PartitionLagStatus(source: source, target: target, sourceHighWatermark: lag.sourceHighWatermark,
                               sourceLogStart: lag.sourceLogStart, copiedNext: lag.copiedNext, lagRecords: lag.lagRecords,
                               lagMs: lag.lagMilliseconds(now: now), copiedRecords: lag.copiedRecords, copiedBytes: lag.copiedBytes,
                               transferP50Ms: latencies.transfer(0.5), transferP99Ms: latencies.transfer(0.99),
                               dwellP50Ms: latencies.dwell(0.5), lastProgressAt: lag.lastProgressAt,
                               newestCopiedTimestamp: lag.newestCopiedTimestamp, stopped: _stopped,
                               waitingForWriter: position == nil && !closed, sourceFailing: _sourceFailing)
        }
    }

    static let wallClockMs: @Sendable () -> Int64 = { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    func stop(_ why: String) {
        let w: CheckedContinuation<Chunk?, Never>? = lock.withLock {
            _stopped = why
            position = nil
            closed = true
            // Nothing more is written: the fetch responses they hold go back to the budget.
            queue.removeAll()
            queued = 0
            defer { waiter = nil }
            return waiter
        }
        w?.resume(returning: nil)
    }

    /// Stops the lane: chunks not yet taken are dropped (a partition handed to another process
    /// must not be written by this one any more) and a waiting writer gets nil.
    func close() {
        let w: CheckedContinuation<Chunk?, Never>? = lock.withLock {
            closed = true
            queue.removeAll()
            queued = 0
            defer { waiter = nil }
            return waiter
        }
        w?.resume(returning: nil)
    }

    var isClosed: Bool { lock.withLock { closed } }
    var stopped: String? { lock.withLock { _stopped } }
    /// The mapping of everything known to have landed in the target.
    var map: PartitionOffsetMap { lock.withLock { _map } }
    var targetEnd: Int64 { lock.withLock { _targetEnd } }
    /// The source high watermark last seen.
    var sourceHighWatermark: Int64 { lock.withLock { _sourceEnd } }

    /// Which of `count` connections to a broker (fetch sessions, produce connections) this
    /// partition uses: consecutive partitions of a topic take turns, so a topic's load spreads
    /// over all of them, and a partition always uses the same one (its requests stay in order).
    func spreadIndex(of count: Int) -> Int {
        guard count > 1 else { return 0 }
        let topicSpread = source.topic.rawValue.utf8.reduce(0) { $0 &+ Int($1) }
        let h = topicSpread &+ Int(source.partition)
        return ((h % count) + count) % count
    }
    var copiedRecords: Int { lock.withLock { _copied } }
}
