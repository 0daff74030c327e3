import Foundation
import KafkaClient
import KafkaProtocol
import Logging
import NIOConcurrencyHelpers
import Topology

/// One running flow: copies the selected topics of the source cluster into the target cluster,
/// keeps the exact offset mapping in the target, and syncs consumer-group offsets.
///
/// Tasks: a discovery loop (topics, partitions, configs), one fetch loop (a fetch in flight per
/// fetch session of each source leader, partitions whose writers fall behind left out), one writer per partition
/// (declare the runs, produce, confirm), and the group-offset sync. The writer of a partition is
/// its target partition's only writer; it reconciles with the target's log end whenever it
/// starts or a write fails, so a crash or a dropped connection neither duplicates nor skips.
/// Lanes are reached under a lock; no lock is held across a network wait.
public final class FlowMirror: @unchecked Sendable {
    public let flow: Topology.Flow
    let naming: RemoteNaming
    let topicFilter: NameFilter
    let groupFilter: NameFilter
    let source: KafkaCluster
    let target: KafkaCluster
    let store: OffsetMapStore
    let settings: MirrorSettings
    let logger: Logger
    let converter: BatchConverter

    let lock = NIOLock()
    var lanes: [TopicPartition: PartitionLane] = [:]
    var loaded: [OffsetMapStore.PartitionKey: OffsetMapStore.Loaded] = [:]
    /// Remote topics known to exist in the target, with their partition counts.
    var remoteTopics: [TopicName: Int] = [:]
    /// Checkpoints last written, per group and remote partition (to write only changes).
    var checkpointed: [String: [TopicPartition: Int64]] = [:]
    var checkpointsTopicReady = false
    /// Partitions the source-side group assigned to this process; nil when it copies them all.
    var owned: Set<TopicPartition>?
    /// Topics the flow selects now (what the group membership subscribes to).
    var selectedTopics: [TopicName] = []
    /// Fetch sessions (source leader, connection) and partitions with a fetch in flight (see `fetchLoop`).
    var fetchingSessions = Set<FetchSession>()
    var fetchingLanes: [TopicPartition: Int32] = [:]  // and the bytes each may bring
    /// Bytes of fetch responses still held by chunks not yet written (see `FetchedResponse`).
    var heldResponseBytes = 0
    /// Whether the last fetch round left lanes out for the flow's memory budget.
    var fetchBudgetLimited = false
    let fetchWakeup = Wakeup()
    /// Requests the source cluster does not serve, already reported (see ``doesNotServe(_:_:)``).
    var unservedRequests: Set<Int16> = []
    static let memberGroupPrefix = "meridian-mirror."

    /// Fetch requests to the source in flight now, over all its brokers.
    public var fetchesInFlight: Int { lock.withLock { fetchingSessions.count } }

    /// Where each partition's copy stands now, worst first (most seconds behind, then most records).
    public func lagStatus() -> [PartitionLagStatus] {
        let now = settings.clock()
        let stallMs = Int64(settings.stallAfter.components.seconds) * 1000 + settings.stallAfter.components.attoseconds / 1_000_000_000_000_000
        var rows = lock.withLock { Array(lanes.values) }.map { $0.lagStatus() }
        for i in rows.indices { rows[i].classify(now: now, stallAfterMs: stallMs) }
        return rows.sorted { ($0.lagMs, $0.lagRecords, $1.source) > ($1.lagMs, $1.lagRecords, $0.source) }
    }

    /// Milliseconds since the newest heartbeat of the source that crossed this flow was written
    /// there (nil before one crossed); it keeps growing when the link or the mirror stalls.
    public func heartbeatAgeMs() -> Int64? {
        let tp = TopicPartition(MM2Records.heartbeatsTopic, 0)
        guard let lane = lock.withLock({ lanes[tp] }) else { return nil }
        let t = lane.lagStatus().newestCopiedTimestamp
        return t >= 0 ? max(0, settings.clock() - t) : nil
    }

    public init(flow: Topology.Flow, regions: Set<String>, source: KafkaCluster, target: KafkaCluster,
                settings: MirrorSettings = MirrorSettings(), logger: Logger) throws {
        self.flow = flow
        naming = RemoteNaming(naming: flow.naming, sourceRegion: flow.source, targetRegion: flow.target, regions: regions)
        topicFilter = try NameFilter(flow.topics)
        groupFilter = try NameFilter(flow.groups)
        self.source = source
        self.target = target
        self.settings = settings
        if settings.groupInstanceID != nil { owned = [] }
        var logger = logger
        logger[metadataKey: "flow"] = "\(flow.name)"
        self.logger = logger
        store = OffsetMapStore(target: target, logger: logger)
        converter = BatchConverter(provenance: flow.naming == .identity ? (flow.source, flow.target) : nil)
    }

    /// Runs until cancelled, then stops cleanly: writers finish the write in progress.
    public func run() async throws {
        try await retryingForever("preparing the offset mapping topic in the target") {
            try await self.store.ensureTopic()
            let loaded = try await self.store.load(flow: self.flow.name)
            self.lock.withLock { self.loaded = loaded }
        }
        logger.info("flow started", metadata: ["source": "\(flow.source)", "target": "\(flow.target)", "naming": "\(flow.naming.rawValue)",
                                               "mapped partitions": "\(lock.withLock { loaded.count })"])
        await withDiscardingTaskGroup { group in
            group.addTask { await self.fetchLoop() }
            group.addTask { await self.groupSyncLoop() }
            group.addTask { await self.heartbeatLoop() }
            if settings.groupInstanceID != nil { group.addTask { await self.membershipLoop() } }
            var round = 0
            while !Task.isCancelled {
                for lane in await discover(round: round) {
                    group.addTask { await self.writeLoop(lane) }
                }
                round += 1
                try? await Task.sleep(for: settings.discoveryInterval)
            }
            for lane in lock.withLock({ Array(lanes.values) }) { lane.close() }
        }
        await store.close()
        logger.info("flow stopped")
    }

    /// Per source partition: records copied, and what is known of both ends.
    public struct PartitionStatus: Sendable, Equatable {
        public var source: TopicPartition
        public var target: TopicPartition
        public var sourceHighWatermark: Int64
        public var copiedUpTo: Int64?
        public var targetEnd: Int64
        public var copiedRecords: Int
        public var stopped: String?
    }

    public var status: [PartitionStatus] {
        lock.withLock { Array(lanes.values) }.map { l in
            PartitionStatus(source: l.source, target: l.target, sourceHighWatermark: l.sourceHighWatermark,
                            copiedUpTo: l.map.sourceEnd, targetEnd: l.targetEnd, copiedRecords: l.copiedRecords, stopped: l.stopped)
        }.sorted { ($0.source.topic, $0.source.partition) < ($1.source.topic, $1.source.partition) }
    }

    /// The mapping of a mirrored source partition as far as it has landed in the target.
    public func offsetMap(_ tp: TopicPartition) -> PartitionOffsetMap? {
        lock.withLock { lanes[tp] }?.map
    }

    func retryingForever(_ what: String, _ body: () async throws -> Void) async throws {
        var backoff = settings.backoff
        while true {
            do {
                return try await body()
            } catch {
                if Task.isCancelled { throw CancellationError() }
                logger.warning("\(what) failed; retrying", metadata: ["error": "\(error)", "retry in": "\(backoff)"])
                try await Task.sleep(for: backoff)
                backoff = min(backoff * 2, settings.maxBackoff)
            }
        }
    }
}
