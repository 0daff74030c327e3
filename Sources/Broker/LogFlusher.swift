import Logging
import LogStorage
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Runs fsyncs off the event loops and coalesces them per log (group commit).
///
/// `flush(_:upTo:on:)` returns a future that succeeds once everything below `upTo` is on stable
/// storage. While an fsync of a log is running, later requests for the same log wait for the next
/// fsync, which then covers all of them: under load one fsync acknowledges many produce requests.
public final class LogFlusher: @unchecked Sendable {
    private struct Waiter {
        var upTo: Int64
        var promise: EventLoopPromise<Void>
    }

    private struct LogState {
        var running = false
        var waiters: [Waiter] = []
    }

    private let pool: NIOThreadPool
    private let lock = NIOLock()
    private var states: [ObjectIdentifier: LogState] = [:]
    private let logger: Logger

    public init(threads: Int = 2, logger: Logger) {
        pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
        self.logger = logger
    }

    public func shutdown() {
        try? pool.syncShutdownGracefully()
    }

    public func flush(_ log: PartitionLog, upTo offset: Int64, on loop: EventLoop) -> EventLoopFuture<Void> {
        if log.durableOffset >= offset { return loop.makeSucceededVoidFuture() }
        let promise = loop.makePromise(of: Void.self)
        let start: Bool = lock.withLock {
            var s = states[ObjectIdentifier(log)] ?? LogState()
            s.waiters.append(Waiter(upTo: offset, promise: promise))
            let start = !s.running
            s.running = true
            states[ObjectIdentifier(log)] = s
            return start
        }
        if start { schedule(log) }
        return promise.futureResult
    }

    /// Flushes without anyone waiting (flush.messages / flush.ms policies).
    public func flushInBackground(_ log: PartitionLog) {
        let start: Bool = lock.withLock {
            var s = states[ObjectIdentifier(log)] ?? LogState()
            let start = !s.running
            s.running = true
            states[ObjectIdentifier(log)] = s
            return start
        }
        if start { schedule(log) }
    }

    private func schedule(_ log: PartitionLog) {
        pool.submit { [self] _ in
            var result: Result<Int64, Error>
            do { result = .success(try log.flush()) } catch { result = .failure(error) }
            let (done, again): ([Waiter], Bool) = lock.withLock {
                var s = states[ObjectIdentifier(log)] ?? LogState()
                var done: [Waiter] = []
                switch result {
                case .success(let end):
                    done = s.waiters.filter { $0.upTo <= end }
                    s.waiters.removeAll { $0.upTo <= end }
                case .failure:
                    done = s.waiters
                    s.waiters = []
                }
                let again = !s.waiters.isEmpty
                s.running = again
                if again { states[ObjectIdentifier(log)] = s } else { states[ObjectIdentifier(log)] = nil }
                return (done, again)
            }
            switch result {
            case .success: for w in done { w.promise.succeed() }
            case .failure(let e):
                logger.error("fsync failed", metadata: ["topic": "\(log.topic)", "partition": "\(log.partition)", "error": "\(e)"])
                for w in done { w.promise.fail(e) }
            }
            if again { schedule(log) }
        }
    }
}
