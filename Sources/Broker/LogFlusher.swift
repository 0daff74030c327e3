import Dispatch
import Logging
import LogStorage
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Runs fsyncs off the event loops and coalesces them per log (group commit).
///
/// ``flush(_:upTo:completion:)`` completes once everything below `upTo` is on stable storage.
/// While an fsync of a log is running, later requests for the same log wait for the next fsync,
/// which then covers all of them: under load one fsync acknowledges many produce requests. A log
/// that fails or closes fails its waiters; the flusher never retries a log that cannot progress.
public final class LogFlusher: @unchecked Sendable {
    private struct Waiter {
        var upTo: Int64
        /// Someone (an acks=all produce, a commit) waits for the answer: flush at once. Otherwise
        /// (making acks=1 appends visible) the flush may wait for the group-commit interval.
        var urgent: Bool
        var completion: @Sendable (Result<Void, Error>) -> Void
    }

    private struct LogState {
        var running = false
        var waiters: [Waiter] = []
        var lastStart: UInt64 = 0
    }

    /// Shortest time between the starts of two fsyncs of one log when nobody waits for the second
    /// one (only acks=1 appends to make visible): under load each such fsync covers more appends
    /// (fewer, larger writes to the disk) at a visibility cost of at most this much. A flush someone
    /// waits for (acks=all, commits) starts as soon as the previous one ends.
    public let groupCommitNanos: UInt64

    private let pool: NIOThreadPool
    private let lock = NIOLock()
    private var states: [ObjectIdentifier: LogState] = [:]
    private let logger: Logger

    public init(threads: Int = 2, groupCommitMs: Double = 5, logger: Logger) {
        pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
        self.logger = logger
        groupCommitNanos = UInt64(max(0, groupCommitMs) * 1_000_000)
    }

    public func shutdown() {
        try? pool.syncShutdownGracefully()
    }

    /// Waits for pending flushes and stops the threads without blocking the caller's thread.
    public func shutdownGracefully() async {
        try? await pool.shutdownGracefully()
    }

    public func flush(_ log: PartitionLog, upTo offset: Int64, urgent: Bool = true,
                      completion: @escaping @Sendable (Result<Void, Error>) -> Void) {
        if log.durableOffset >= offset {
            completion(.success(()))
            return
        }
        let start: Bool = lock.withLock {
            var s = states[ObjectIdentifier(log)] ?? LogState()
            s.waiters.append(Waiter(upTo: offset, urgent: urgent, completion: completion))
            let start = !s.running
            s.running = true
            states[ObjectIdentifier(log)] = s
            return start
        }
        if start { schedule(log) }
    }

    public func flush(_ log: PartitionLog, upTo offset: Int64, on loop: EventLoop) -> EventLoopFuture<Void> {
        let p = loop.makePromise(of: Void.self)
        flush(log, upTo: offset) { p.completeWith($0) }
        return p.futureResult
    }

    /// Flushes without anyone waiting (flush.messages / flush.ms policies).
    public func flushInBackground(_ log: PartitionLog) {
        flush(log, upTo: Int64.max, urgent: false) { _ in }
    }

    private func schedule(_ log: PartitionLog) {
        let wait: UInt64 = lock.withLock {
            let now = DispatchTime.now().uptimeNanoseconds
            let state = states[ObjectIdentifier(log)]
            let last = state?.lastStart ?? 0
            let urgent = state?.waiters.contains { $0.urgent } ?? true
            let wait = urgent || last == 0 || now >= last + groupCommitNanos ? 0 : last + groupCommitNanos - now
            states[ObjectIdentifier(log)]?.lastStart = now + wait
            return wait
        }
        if wait > 0 {
            DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(wait))) { [self] in run(log) }
        } else {
            run(log)
        }
    }

    private func run(_ log: PartitionLog) {
        pool.submit { [self] _ in
            let result: Result<Int64, Error>
            do { result = .success(try log.flush()) } catch { result = .failure(error) }
            var unreachable: [Waiter] = []
            let (done, again): ([Waiter], Bool) = lock.withLock {
                var s = states[ObjectIdentifier(log)] ?? LogState()
                var done: [Waiter] = []
                switch result {
                case .success(let end):
                    // Background requests (upTo = max) are satisfied by any completed flush; a
                    // request beyond the log end can never be (the log was cut under it).
                    let logEnd = log.offsets.logEndOffset
                    done = s.waiters.filter { $0.upTo <= end || $0.upTo == Int64.max }
                    s.waiters.removeAll { $0.upTo <= end || $0.upTo == Int64.max }
                    if end >= logEnd {
                        unreachable = s.waiters
                        s.waiters = []
                    }
                case .failure:
                    done = s.waiters
                    s.waiters = []
                }
                let again = !s.waiters.isEmpty
                s.running = again
                // Idle again: the next append's flush may start at once.
                states[ObjectIdentifier(log)] = again ? s : nil
                return (done, again)
            }
            switch result {
            case .success:
                for w in done { w.completion(.success(())) }
                for w in unreachable { w.completion(.failure(LogError.closed)) }
            case .failure(let e):
                if case LogError.closed = e {} else {
                    logger.error("fsync failed", metadata: ["topic": "\(log.topic)", "partition": "\(log.partition)", "error": "\(e)"])
                }
                for w in done { w.completion(.failure(e)) }
            }
            if again { schedule(log) }
        }
    }
}
