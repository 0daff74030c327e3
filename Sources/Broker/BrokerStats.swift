import Atomics

/// Counters about the broker's own work, readable from any thread.
public final class BrokerStats: Sendable {
    /// How many times a fetch looked at its partitions (once per request, plus once per wake-up
    /// while long-polling). A waiting fetch that is not woken adds nothing: no polling loop.
    public let fetchEvaluations = ManagedAtomic<Int>(0)
    public let produceRequests = ManagedAtomic<Int>(0)

    public init() {}
}
