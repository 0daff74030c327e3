import Foundation
import KafkaClient
import KafkaProtocol
import Logging
import NIOCore
import Topology

/// A flow's lag computed from the two clusters and the offset mapping the flow stored in the
/// target, without the mirror process: what `meridian lag` shows when no mirror answers, and the
/// failover RPO of each consumer group (`meridian lag --groups`).
///
/// A partition's copied position is the source end of its last mapping run that landed in the
/// target (runs declared but not written are cut at the target's log end, as the mirror does on
/// start); a partition the flow never wrote counts from the source's log start. Seconds behind is the
/// age of the source record at that position.
public struct ClusterLag: Sendable {
    /// What failing a consumer group over to the target now would cost, per partition.
    public struct GroupRow: Codable, Sendable, Equatable {
        public var flow: String
        public var group: String
        public var topic: String
        public var partition: Int
        public var remoteTopic: String
        /// The group's committed offset in the source.
        public var committed: Int64
        /// Records the group consumed in the source that are not in the target: after a failover now
        /// it never sees them there (lost if the source is gone, delivered again later if it comes back).
        public var rpoRecords: Int64
        /// Age of the oldest of those records (0 when there are none).
        public var rpoSeconds: Double
        /// Where the group resumes in the target: its committed offset there (nil when never synced).
        public var targetCommitted: Int64?
        /// The exact target position of what it consumed and the flow copied.
        public var translated: Int64?
        /// Records the group would read a second time in the target: how far its target offset is
        /// behind the exact translation (0 once the mirror synced it).
        public var reReads: Int64?

        public init(flow: String, group: String, topic: String, partition: Int, remoteTopic: String, committed: Int64, rpoRecords: Int64,
                    rpoSeconds: Double, targetCommitted: Int64?, translated: Int64?, reReads: Int64?) {
            self.flow = flow
            self.group = group
            self.topic = topic
            self.partition = partition
            self.remoteTopic = remoteTopic
            self.committed = committed
            self.rpoRecords = rpoRecords
            self.rpoSeconds = rpoSeconds
            self.targetCommitted = targetCommitted
            self.translated = translated
            self.reReads = reReads
        }
    }

    public struct Snapshot: Sendable {
        public var rows: [LagReport.Row]
        public var groups: [GroupRow]
        /// Age of the newest of the source's heartbeats found in the target, nil when none crossed.
        public var heartbeatAgeSeconds: Double?
    }

    struct Position {
        var source: TopicPartition
        var remote: TopicPartition
        var logStart: Int64
        var end: Int64
        var copied: Int64
        var map: PartitionOffsetMap
        var lag: Int64 { ClusterLag.gap(end, copied) }
    }

    /// `a − b`, at least 0, without trapping on offsets a cluster made up (they come off the wire).
    static func gap(_ a: Int64, _ b: Int64) -> Int64 {
        let (d, overflow) = a.subtractingReportingOverflow(b)
        return overflow ? (a > b ? .max : 0) : max(0, d)
    }

    /// Seconds from a record's timestamp (any value a cluster sends) to `nowMs`, at least 0.
    static func age(_ nowMs: Int64, _ timestamp: Int64) -> Double {
        max(0, (Double(nowMs) - Double(timestamp)) / 1000)
    }

    public let flow: Topology.Flow
    let naming: RemoteNaming
    let topics: NameFilter
    let groupFilter: NameFilter
    let source: KafkaCluster
    let target: KafkaCluster
    let logger: Logger

    public init(flow: Topology.Flow, regions: Set<String>, source: KafkaCluster, target: KafkaCluster, logger: Logger) throws {
        self.flow = flow
        naming = RemoteNaming(naming: flow.naming, sourceRegion: flow.source, targetRegion: flow.target, regions: regions)
        topics = try NameFilter(flow.topics)
        groupFilter = try NameFilter(flow.groups)
        self.source = source
        self.target = target
        self.logger = logger
    }

    /// Every selected partition's lag (and, with `groups`, each selected group's RPO) at `nowMs`.
    /// `state` is what the table shows for a partition, given whether it is behind.
    public func measure(nowMs: Int64, groups: Bool, state: (_ behind: Bool) -> String) async throws -> Snapshot {
        let positions = try await self.positions()
        let sourceAdmin = KafkaAdmin(cluster: source)
        // One record at each position that matters: a lagging partition's first uncopied record.
        let oldest = try await timestamps(at: positions.filter { $0.lag > 0 }.map { ($0.source, $0.copied) })
        var rows: [LagReport.Row] = []
        for p in positions {
            let seconds = p.lag > 0 ? oldest[p.source].map { ClusterLag.age(nowMs, $0) } ?? 0 : 0
            rows.append(LagReport.Row(flow: flow.name, source: flow.source, target: flow.target, topic: p.source.topic.rawValue,
                                      partition: Int(p.source.partition), remoteTopic: p.remote.topic.rawValue, lagRecords: p.lag,
                                      lagSeconds: seconds, state: state(p.lag > 0), transferP50Seconds: nil, transferP99Seconds: nil))
        }
        var groupRows: [GroupRow] = []
        if groups {
            let byPartition = Dictionary(positions.map { ($0.source, $0) }, uniquingKeysWith: { a, _ in a })
            let targetAdmin = KafkaAdmin(cluster: target)
            for g in try await sourceAdmin.listGroups().map(\.groupID).sorted(by: { $0.rawValue < $1.rawValue })
            where !g.rawValue.isEmpty && groupFilter.matches(g.rawValue) {
                let committed = try await sourceAdmin.groupOffsets(g).filter { byPartition[$0.key] != nil }
                guard !committed.isEmpty else { continue }
                let remote = committed.keys.map { byPartition[$0]!.remote }
                let synced = try await targetAdmin.groupOffsets(g, partitions: remote)
                for (tp, c) in committed.sorted(by: { ($0.key.topic, $0.key.partition) < ($1.key.topic, $1.key.partition) }) {
                    let p = byPartition[tp]!
                    let rpo = ClusterLag.gap(c, p.copied)
                    let translated = p.map.translate(min(c, p.copied))
                    let synced = synced[p.remote]
                    groupRows.append(GroupRow(
                        flow: flow.name, group: g.rawValue, topic: tp.topic.rawValue, partition: Int(tp.partition),
                        remoteTopic: p.remote.topic.rawValue, committed: c, rpoRecords: rpo,
                        rpoSeconds: rpo > 0 ? oldest[tp].map { ClusterLag.age(nowMs, $0) } ?? 0 : 0,
                        targetCommitted: synced, translated: translated,
                        reReads: translated.flatMap { t in synced.map { ClusterLag.gap(t, $0) } }))
                }
            }
        }
        return Snapshot(rows: rows, groups: groupRows, heartbeatAgeSeconds: try await heartbeatAge(nowMs: nowMs))
    }

    /// The selected source partitions with their log range and how far the flow copied each.
    func positions() async throws -> [Position] {
        let sourceAdmin = KafkaAdmin(cluster: source)
        var pairs: [(TopicPartition, TopicPartition)] = []
        for t in try await sourceAdmin.listTopics() where !t.isInternal && t.error == .none && topics.matches(t.name.rawValue) {
            guard let remote = naming.remoteName(for: t.name) else { continue }
            for p in t.partitions { pairs.append((TopicPartition(t.name, p.partition), TopicPartition(remote, p.partition))) }
        }
        guard !pairs.isEmpty else { return [] }
        let ends = try await sourceAdmin.listOffsets(pairs.map(\.0), .latest)
        let starts = try await sourceAdmin.listOffsets(pairs.map(\.0), .earliest)
        let maps = try await OffsetMapStore.landed(flow: flow.name, target: target, logger: logger)
        var out: [Position] = []
        for (s, r) in pairs.sorted(by: { ($0.0.topic, $0.0.partition) < ($1.0.topic, $1.0.partition) }) {
            let start = starts[s] ?? 0
            let map = maps[.init(flow: flow.name, topic: s.topic, partition: s.partition)]?.map ?? PartitionOffsetMap()
            let copied = max(start, map.sourceEnd ?? start)
            out.append(Position(source: s, remote: r, logStart: start, end: ends[s] ?? start, copied: copied, map: map))
        }
        return out
    }

    /// The timestamp of the first record at or after each given source offset (one fetch round for all).
    func timestamps(at wanted: [(TopicPartition, Int64)]) async throws -> [TopicPartition: Int64] {
        guard !wanted.isEmpty else { return [:] }
        var config = ConsumerConfig()
        config.maxPartitionFetchBytes = 64 << 10
        config.fetchMaxWaitMs = 100
        let consumer = KafkaConsumer(cluster: source, config: config)
        consumer.assign(wanted.map(\.0))
        for (tp, o) in wanted { consumer.seek(tp, to: .offset(o)) }
        var found: [TopicPartition: Int64] = [:]
        let deadline = ContinuousClock.now + .seconds(5)
        do {
            while found.count < wanted.count, ContinuousClock.now < deadline {
                for r in try await consumer.poll(timeout: .milliseconds(300)) where found[r.topicPartition] == nil {
                    found[r.topicPartition] = r.timestamp
                }
            }
        } catch {
            await consumer.close()
            throw error
        }
        await consumer.close()
        return found
    }

    /// Age of the last heartbeat of the flow's source that arrived in the target.
    func heartbeatAge(nowMs: Int64) async throws -> Double? {
        guard let topic = naming.remoteName(for: MM2Records.heartbeatsTopic) else { return nil }
        let tp = TopicPartition(topic, 0)
        let admin = KafkaAdmin(cluster: target)
        let end: Int64
        do {
            guard let e = try await admin.listOffsets([tp], .latest)[tp], e > 0 else { return nil }
            end = e
        } catch KafkaClientError.unknownTopic {
            return nil
        } catch let KafkaClientError.broker(code, _) where code == .unknownTopicOrPartition {
            return nil
        }
        var config = ConsumerConfig()
        config.fetchMaxWaitMs = 100
        let consumer = KafkaConsumer(cluster: target, config: config)
        consumer.assign([tp])
        consumer.seek(tp, to: .offset(end - 1))
        var newest: Int64?
        let deadline = ContinuousClock.now + .seconds(3)
        do {
            while newest == nil, ContinuousClock.now < deadline {
                for r in try await consumer.poll(timeout: .milliseconds(300)) {
                    guard let k = r.key, let v = r.value, let h = MM2Records.decodeHeartbeat(key: k, value: v) else { continue }
                    newest = max(newest ?? h.timestamp, h.timestamp)
                }
            }
        } catch {
            await consumer.close()
            throw error
        }
        await consumer.close()
        return newest.map { ClusterLag.age(nowMs, $0) }
    }
}
