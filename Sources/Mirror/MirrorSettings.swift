import KafkaClient

/// Tunables of a running flow. Defaults suit a WAN link; tests shorten the intervals.
public struct MirrorSettings: Sendable {
    /// How often the source's topic list, partition counts and configs are compared with the target.
    public var discoveryInterval: Duration = .seconds(2)
    /// Topic configs are compared every this many discovery rounds (new topics get them at once).
    public var configSyncEvery = 5
    /// How often committed group offsets are translated into the target.
    public var groupSyncInterval: Duration = .seconds(5)
    /// How often a heartbeat is written into the source's `heartbeats` topic (0 turns them off).
    public var heartbeatInterval: Duration = .seconds(1)
    /// Long-poll wait of a source fetch.
    public var fetchMaxWaitMs: Int32 = 500
    /// Bytes a source fetch asks for per partition at first; a busy partition asks for more, up to
    /// `partitionBufferBytes`, while its fetches come back full (one round trip carries that much).
    public var partitionFetchBytes: Int32 = 4 << 20
    /// Fetches in flight per source broker, each on its own connection for its share of that
    /// broker's partitions: while one answer is being taken apart, the others are on the wire.
    public var fetchSessionsPerBroker = 2
    /// Bytes a source fetch may return in all.
    public var fetchMaxBytes: Int32 = 64 << 20
    /// Bytes of fetch responses the flow may hold in memory (a response is held until every batch
    /// taken from it is written) plus what its fetches in flight may bring; no fetch starts over
    /// it, so a target that takes writes slowly slows the source side (backpressure).
    public var bufferBytes = 96 << 20
    /// Fetched bytes queued per partition before that partition pauses.
    public var partitionBufferBytes = 16 << 20
    /// Produce connections per target broker, partitions spread over them: a broker serves each
    /// connection on one of its event loops, so one connection would hold the mirror's writes to
    /// one core of the target.
    public var produceConnectionsPerBroker = 2
    /// Produce requests in flight per partition (each carries one batch; at most 5, the window
    /// an idempotent producer may have open in Kafka).
    public var producesInFlight = 5
    /// Pause after a failure before reconnecting, doubled per failure up to `maxBackoff`.
    public var backoff: Duration = .milliseconds(100)
    public var maxBackoff: Duration = .seconds(5)

    /// Set to share the flow among several mirror processes: each joins the source-side group
    /// `meridian-mirror.<flow>` with this static member id and copies only the partitions the group
    /// assigns it. Nil: this process copies every partition.
    public var groupInstanceID: String?
    /// Session timeout of that membership: how long a dead process keeps its partitions.
    public var memberSessionTimeoutMs: Int32 = 10_000
    /// How long a process waits before writing a partition the group just gave it, so the previous
    /// owner — which learns of the change at the same moment and stops sending at once — has its
    /// last requests answered first.
    public var takeoverGrace: Duration = .seconds(2)

    /// A partition with records waiting and none copied for this long is reported stalled.
    public var stallAfter: Duration = .seconds(10)
    /// Source brokers reached through another address (`"host:port"` → where to connect), e.g.
    /// `meridian up`'s simulated WAN link; see ``KafkaCluster/Options/routes``.
    public var sourceRoutes: [String: BootstrapAddress] = [:]
    /// Milliseconds since the epoch, for lag in time and stall detection (tests inject their own).
    public var clock: @Sendable () -> Int64 = PartitionLane.wallClockMs

    public init() {}
}
