import KafkaProtocol

/// Settings of a ``KafkaConsumer``, named after the Java client's where they mean the same.
public struct ConsumerConfig: Sendable {
    /// Where to start when there is no committed offset (or it is out of range).
    public enum OffsetReset: Sendable { case earliest, latest, none }

    /// Consumer group; nil for a consumer that only uses `assign`.
    public var groupID: GroupID?
    /// Static membership id (`group.instance.id`).
    public var groupInstanceID: String?
    public var sessionTimeoutMs: Int32 = 10_000
    public var heartbeatIntervalMs: Int64 = 3_000
    /// `max.poll.interval.ms`, sent as the rebalance timeout.
    public var rebalanceTimeoutMs: Int32 = 300_000
    public var autoOffsetReset: OffsetReset = .latest
    public var enableAutoCommit = true
    public var autoCommitIntervalMs: Int64 = 5_000
    /// Assignment strategies offered to the group, in order of preference.
    public var assignors: [PartitionAssignor] = [RangeAssignor(), CooperativeStickyAssignor()]
    public var fetchMaxWaitMs: Int32 = 500
    public var fetchMinBytes: Int32 = 1
    public var fetchMaxBytes: Int32 = 50 << 20
    public var maxPartitionFetchBytes: Int32 = 1 << 20
    /// Skip batches the client cannot check instead of failing (other codecs than none/gzip).
    public var checkCRCs = true
    /// False for a member that only takes part in its group — its assignment drives work done
    /// elsewhere, as a mirror process's does — so `poll` keeps the membership alive and never fetches.
    public var fetchRecords = true

    public init(groupID: GroupID? = nil) {
        self.groupID = groupID
    }
}
