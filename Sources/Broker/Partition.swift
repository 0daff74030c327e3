import KafkaProtocol
import Logging
import LogStorage
import NIOConcurrencyHelpers
import NIOCore

/// One partition as this broker leads it: its log, the high watermark clients may read up to, and
/// the leader epoch. Handlers go through it, never to the log directly, so that what a consumer
/// (and later a mirror or a follower) sees is decided in one place.
///
/// High watermark: with fsync on (the default) it is the log's durable offset, so no client ever
/// reads a record that a power loss could take back; every append asks the ``LogFlusher`` for a
/// group-committed flush, which moves it within milliseconds. With fsync off it follows the log end.
///
/// Leader epoch: bumped on every broker start (each start is a new leadership), persisted in the
/// log's epoch checkpoint, stamped into appended batches and reported in Metadata, ListOffsets,
/// Fetch and OffsetForLeaderEpoch. This is the seam replication will use.
///
/// Fetch waiters are callbacks run (once) when the high watermark moves or the partition closes.
public final class Partition: @unchecked Sendable {
    public let log: PartitionLog
    public var topic: TopicName { log.topic }
    public var index: Int32 { log.partition }
    private let flusher: LogFlusher
    private let durableHighWatermark: Bool
    private let lock = NIOLock()
    private var waiters: [UInt64: @Sendable () -> Void] = [:]
    private var nextWaiterID: UInt64 = 0
    private var closed = false

    init(log: PartitionLog, flusher: LogFlusher, durableHighWatermark: Bool) {
        self.log = log
        self.flusher = flusher
        self.durableHighWatermark = durableHighWatermark
    }

    /// Takes leadership with an epoch above every epoch the log has seen. Writes the epoch
    /// checkpoint: call it off the event loops (at startup or topic creation).
    func becomeLeader() throws {
        try log.becomeLeader(epoch: (log.leaderEpochs.latestEpoch ?? -1) + 1)
    }

    public var leaderEpoch: Int32 { log.leaderEpoch }

    /// What consumers may read up to.
    public var highWatermark: Int64 {
        let o = log.offsets
        return durableHighWatermark ? o.durableOffset : o.logEndOffset
    }

    public struct Offsets: Sendable, Equatable {
        public var logStartOffset: Int64
        public var highWatermark: Int64
        public var logEndOffset: Int64
    }

    public var offsets: Offsets {
        let o = log.offsets
        return Offsets(logStartOffset: o.logStartOffset, highWatermark: durableHighWatermark ? o.durableOffset : o.logEndOffset,
                       logEndOffset: o.logEndOffset)
    }

    // MARK: - Writes

    /// Appends a produced payload (see ``PartitionLog/append(_:nowMs:allowRoll:)``) and starts the
    /// group-committed flush that will make it visible.
    public func append(_ records: ByteBuffer, nowMs: Int64, allowRoll: Bool) throws -> PartitionLog.AppendResult {
        let r = try log.append(records, nowMs: nowMs, allowRoll: allowRoll)
        if r.isDuplicate { return r }
        if durableHighWatermark {
            flush(upTo: r.lastOffset + 1, urgent: false) { _ in }
        } else {
            notifyWaiters()
            if r.flushDue { flush(upTo: r.lastOffset + 1, urgent: false) { _ in } }
        }
        return r
    }

    /// Completes once everything below `offset` is durable (or the flush failed).
    public func flush(upTo offset: Int64, urgent: Bool = true, completion: @escaping @Sendable (Result<Void, Error>) -> Void) {
        flusher.flush(log, upTo: offset, urgent: urgent) { [weak self] result in
            if case .success = result { self?.notifyWaiters() }
            completion(result)
        }
    }

    public func flush(upTo offset: Int64, on loop: EventLoop) -> EventLoopFuture<Void> {
        let p = loop.makePromise(of: Void.self)
        flush(upTo: offset) { p.completeWith($0) }
        return p.futureResult
    }

    // MARK: - Reads

    /// Whole batches from `offset`, never past the high watermark.
    public func read(offset: Int64, maxBytes: Int) throws -> (PartitionLog.ReadResult, highWatermark: Int64) {
        let hw = highWatermark
        return (try log.read(offset: offset, maxBytes: maxBytes, upTo: hw), hw)
    }

    /// Checks a client's view of the leader epoch (-1: no view): an older one is fenced, a newer
    /// one is unknown here (this broker has not caught up with a leadership change).
    public func validate(currentLeaderEpoch: Int32) -> ErrorCode {
        guard currentLeaderEpoch >= 0 else { return .none }
        let mine = leaderEpoch
        if currentLeaderEpoch < mine { return .fencedLeaderEpoch }
        if currentLeaderEpoch > mine { return .unknownLeaderEpoch }
        return .none
    }

    /// The epoch that wrote `offset`, -1 when unknown.
    public func epoch(at offset: Int64) -> Int32 {
        log.leaderEpochs.epoch(at: offset) ?? -1
    }

    /// OffsetForLeaderEpoch: where `epoch` ended on this leader.
    public func endOffset(forEpoch epoch: Int32) -> (epoch: Int32, endOffset: Int64) {
        log.leaderEpochs.endOffset(for: epoch, logEndOffset: log.offsets.logEndOffset)
    }

    // MARK: - Waiters

    /// Registers a one-shot callback for the next high-watermark move (or close). Returns an id
    /// for ``removeWaiter(_:)``.
    /// Registers a callback for the next change; nil when the partition is closed (deleted or the
    /// broker stopping): nothing will change any more, and the caller must not wait for it.
    public func addWaiter(_ callback: @escaping @Sendable () -> Void) -> UInt64? {
        lock.withLock {
            if closed { return nil }
            nextWaiterID &+= 1
            waiters[nextWaiterID] = callback
            return nextWaiterID
        }
    }

    public func removeWaiter(_ id: UInt64) {
        lock.withLock { _ = waiters.removeValue(forKey: id) }
    }

    private func notifyWaiters() {
        let fire: [@Sendable () -> Void] = lock.withLock {
            guard !waiters.isEmpty else { return [] }
            let w = Array(waiters.values)
            waiters.removeAll(keepingCapacity: true)
            return w
        }
        for f in fire { f() }
    }

    /// Wakes every waiter for good (the partition is closing or its topic was deleted).
    func closeWaiters() {
        let fire: [@Sendable () -> Void] = lock.withLock {
            closed = true
            let w = Array(waiters.values)
            waiters.removeAll()
            return w
        }
        for f in fire { f() }
    }
}
