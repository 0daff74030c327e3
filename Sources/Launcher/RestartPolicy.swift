/// When to start a crashed child process again: after 1 s, then twice as long after each crash
/// in a row, up to 30 s; a child that ran for a minute counts as healthy again. A value type driven
/// by the caller's clock (milliseconds), tested without processes.
public struct RestartPolicy: Sendable, Equatable {
    public var initialBackoffMs: Int64 = 1_000
    public var maxBackoffMs: Int64 = 30_000
    public var healthyAfterMs: Int64 = 60_000
    /// Crashes in a row (reset by a run of `healthyAfterMs`).
    public private(set) var crashes = 0
    private var startedAt: Int64?

    public init() {}

    public mutating func started(at now: Int64) {
        startedAt = now
    }

    /// The child exited unexpectedly at `now`: how long to wait before starting it again.
    public mutating func exited(at now: Int64) -> Int64 {
        if let s = startedAt, now - s >= healthyAfterMs { crashes = 0 }
        startedAt = nil
        crashes += 1
        var delay = initialBackoffMs
        for _ in 1..<crashes where delay < maxBackoffMs { delay *= 2 }
        return min(delay, maxBackoffMs)
    }
}
