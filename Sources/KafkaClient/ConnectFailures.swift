/// Which connection troubles to report: an address's first failure at once, then again every
/// interval while it keeps failing; a connect that is slow to answer when nothing about the address
/// was said within the interval; and how long an address was down when it answers again. A value
/// type with the time passed in (owned by a ``KafkaCluster`` under its lock).
struct ConnectFailures: Sendable, Equatable {
    private var since: [String: ContinuousClock.Instant] = [:]
    private var reportedFailure: [String: ContinuousClock.Instant] = [:]
    private var reportedAny: [String: ContinuousClock.Instant] = [:]

    /// Records a failed attempt; true when it should be reported.
    mutating func failed(_ address: String, now: ContinuousClock.Instant, every interval: Duration) -> Bool {
        if since[address] == nil { since[address] = now }
        if let last = reportedFailure[address], now - last < interval { return false }
        reportedFailure[address] = now
        reportedAny[address] = now
        return true
    }

    /// Records an attempt still without an answer; true when it should be reported.
    mutating func slow(_ address: String, now: ContinuousClock.Instant, every interval: Duration) -> Bool {
        if since[address] == nil { since[address] = now }
        if let last = reportedAny[address], now - last < interval { return false }
        reportedAny[address] = now
        return true
    }

    /// Records a successful connect; how long the address had been failing, if it had.
    mutating func succeeded(_ address: String, now: ContinuousClock.Instant) -> Duration? {
        reportedFailure[address] = nil
        reportedAny[address] = nil
        return since.removeValue(forKey: address).map { now - $0 }
    }
}
