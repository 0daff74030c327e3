import Foundation
import KafkaProtocol
import KafkaWire
import NIOCore

/// Administrative operations on a cluster: topics, consumer groups and their offsets.
///
/// Each call goes to the broker that must answer it (the group coordinator, partition leaders,
/// any broker for cluster-wide questions) and turns error codes into ``KafkaClientError``s that
/// say what failed.
public struct KafkaAdmin: Sendable {
    public let cluster: KafkaCluster

    public init(cluster: KafkaCluster) {
        self.cluster = cluster
    }

    // MARK: Groups

    public struct GroupListing: Sendable, Equatable {
        public var groupID: GroupID
        public var protocolType: String
        public var state: String
    }

    /// Every group of every broker.
    public func listGroups() async throws -> [GroupListing] {
        try await cluster.refreshMetadata(topics: [])
        var out: [GroupListing] = []
        for b in cluster.knownBrokers {
            let conn = try await cluster.connection(to: b.id)
            let resp = try await conn.send(ListGroupsRequest(), version: try conn.version(for: ListGroupsRequest.self, max: 4))
            guard resp.errorCode == .none else { throw KafkaClientError.broker(resp.errorCode, "ListGroups on broker \(b.id)") }
            out += resp.groups.map { GroupListing(groupID: $0.groupID, protocolType: $0.protocolType, state: $0.groupState) }
        }
        return out.sorted { $0.groupID.rawValue < $1.groupID.rawValue }
    }

    public struct GroupMember: Sendable, Equatable {
        public var memberID: String
        public var groupInstanceID: String?
        public var clientID: String
        public var host: String
        /// Partitions assigned to the member (decoded when the group uses the consumer protocol).
        public var assignment: [TopicPartition]
    }

    public struct GroupDescription: Sendable, Equatable {
        public var groupID: GroupID
        public var state: String
        public var protocolType: String
        public var protocolName: String
        public var members: [GroupMember]
    }

    public func describeGroup(_ group: GroupID) async throws -> GroupDescription {
        let conn = try await cluster.coordinator(for: group)
        var req = DescribeGroupsRequest()
        req.groups = [group]
        let resp = try await conn.send(req, version: try conn.version(for: DescribeGroupsRequest.self, max: 5))
        guard let d = resp.groups.first else { throw KafkaClientError.broker(.unknownServerError, "DescribeGroups returned nothing") }
        guard d.errorCode == .none else { throw KafkaClientError.broker(d.errorCode, "DescribeGroups for \(group)") }
        let members = d.members.map { m -> GroupMember in
            var partitions: [TopicPartition] = []
            if d.protocolType == "consumer", m.memberAssignment.readableBytes >= 2 {
                if let a = try? ConsumerProtocolAssignment.decode(m.memberAssignment) {
                    partitions = a.assignedPartitions.flatMap { t in t.partitions.map { TopicPartition(t.topic, $0) } }.sorted()
                }
            }
            return GroupMember(memberID: m.memberID, groupInstanceID: m.groupInstanceID, clientID: m.clientID,
                               host: m.clientHost, assignment: partitions)
        }
        return GroupDescription(groupID: group, state: d.groupState, protocolType: d.protocolType,
                                protocolName: d.protocolData, members: members)
    }

    /// Committed offsets of a group (every partition it committed when `partitions` is nil).
    public func groupOffsets(_ group: GroupID, partitions: [TopicPartition]? = nil) async throws -> [TopicPartition: Int64] {
        let conn = try await cluster.coordinator(for: group)
        var req = OffsetFetchRequest()
        req.groupID = group
        if let partitions {
            var byTopic: [TopicName: [Int32]] = [:]
            for tp in partitions { byTopic[tp.topic, default: []].append(tp.partition) }
            req.topics = byTopic.map { .init(name: $0.key, partitionIndexes: $0.value.sorted()) }
        } else {
            req.topics = nil
        }
        let resp = try await conn.send(req, version: try conn.version(for: OffsetFetchRequest.self, max: 7))
        guard resp.errorCode == .none else { throw KafkaClientError.broker(resp.errorCode, "OffsetFetch for \(group)") }
        var out: [TopicPartition: Int64] = [:]
        for t in resp.topics {
            for p in t.partitions {
                guard p.errorCode == .none else { throw KafkaClientError.broker(p.errorCode, "OffsetFetch \(t.name)-\(p.partitionIndex)") }
                if p.committedOffset >= 0 { out[TopicPartition(t.name, p.partitionIndex)] = p.committedOffset }
            }
        }
        return out
    }

    /// Commits offsets for a group that has no active members (standalone commit, generation -1).
    public func alterGroupOffsets(_ group: GroupID, _ offsets: [TopicPartition: Int64]) async throws {
        let conn = try await cluster.coordinator(for: group)
        var req = OffsetCommitRequest()
        req.groupID = group
        req.generationIDOrMemberEpoch = -1
        req.memberID = ""
        var byTopic: [TopicName: [OffsetCommitRequest.OffsetCommitRequestPartition]] = [:]
        for (tp, o) in offsets {
            byTopic[tp.topic, default: []].append(.init(partitionIndex: tp.partition, committedOffset: o, committedMetadata: ""))
        }
        req.topics = byTopic.map { .init(name: $0.key, partitions: $0.value) }
        let resp = try await conn.send(req, version: try conn.version(for: OffsetCommitRequest.self, max: 8))
        for t in resp.topics {
            for p in t.partitions where p.errorCode != .none {
                throw KafkaClientError.broker(p.errorCode, "committing offsets of group \(group) for \(t.name)-\(p.partitionIndex)")
            }
        }
    }

    public func deleteGroup(_ group: GroupID) async throws {
        let conn = try await cluster.coordinator(for: group)
        var req = DeleteGroupsRequest()
        req.groupsNames = [group]
        let resp = try await conn.send(req, version: try conn.version(for: DeleteGroupsRequest.self, max: 2))
        if let r = resp.results.first, r.errorCode != .none {
            throw KafkaClientError.broker(r.errorCode, "deleting group \(group)")
        }
    }

    // MARK: Offsets of partitions

    public enum OffsetSpec: Sendable, Equatable {
        case earliest
        case latest
        /// The first offset whose timestamp is at or after this time (ms since the epoch).
        case timestamp(Int64)

        var wire: Int64 {
            switch self {
            case .earliest: return -2
            case .latest: return -1
            case .timestamp(let t): return t
            }
        }
    }

    /// Offsets of partitions by spec, asking each partition's leader. A timestamp after the last
    /// record gives the end offset (where a consumer would wait), as Kafka's tools do.
    public func listOffsets(_ partitions: [TopicPartition], _ spec: OffsetSpec) async throws -> [TopicPartition: Int64] {
        var byLeader: [BrokerID: [TopicPartition]] = [:]
        for tp in partitions {
            let t = try await cluster.topic(tp.topic)
            guard let p = t.partitions.first(where: { $0.partition == tp.partition }) else {
                throw KafkaClientError.invalidArgument("topic \(tp.topic) has no partition \(tp.partition)")
            }
            byLeader[p.leader, default: []].append(tp)
        }
        var out: [TopicPartition: Int64] = [:]
        var needEnd: [TopicPartition] = []
        for (leader, tps) in byLeader {
            let conn = try await cluster.connection(to: leader)
            var req = ListOffsetsRequest()
            req.replicaID = -1
            var byTopic: [TopicName: [Int32]] = [:]
            for tp in tps { byTopic[tp.topic, default: []].append(tp.partition) }
            req.topics = byTopic.map { .init(name: $0.key, partitions: $0.value.map { .init(partitionIndex: $0, timestamp: spec.wire) }) }
            let resp = try await conn.send(req, version: try conn.version(for: ListOffsetsRequest.self, max: 7))
            for t in resp.topics {
                for p in t.partitions {
                    let tp = TopicPartition(t.name, p.partitionIndex)
                    guard p.errorCode == .none else {
                        cluster.invalidate(t.name)
                        throw KafkaClientError.broker(p.errorCode, "ListOffsets \(tp)")
                    }
                    if p.offset < 0 { needEnd.append(tp) } else { out[tp] = p.offset }
                }
            }
        }
        if !needEnd.isEmpty {
            for (tp, o) in try await listOffsets(needEnd, .latest) { out[tp] = o }
        }
        return out
    }

    /// Deletes the records before the given offsets (Kafka's DeleteRecords: the partitions' log start
    /// moves up; −1 means the high watermark). Returns each partition's new low watermark.
    @discardableResult
    public func deleteRecords(before offsets: [TopicPartition: Int64], timeoutMs: Int32 = 30_000) async throws -> [TopicPartition: Int64] {
        var byLeader: [BrokerID: [TopicPartition]] = [:]
        for tp in offsets.keys {
            let t = try await cluster.topic(tp.topic)
            guard let p = t.partitions.first(where: { $0.partition == tp.partition }) else {
                throw KafkaClientError.invalidArgument("topic \(tp.topic) has no partition \(tp.partition)")
            }
            byLeader[p.leader, default: []].append(tp)
        }
        var out: [TopicPartition: Int64] = [:]
        for (leader, tps) in byLeader {
            let conn = try await cluster.connection(to: leader)
            var req = DeleteRecordsRequest()
            req.timeoutMs = timeoutMs
            var byTopic: [TopicName: [TopicPartition]] = [:]
            for tp in tps { byTopic[tp.topic, default: []].append(tp) }
            req.topics = byTopic.map { name, tps in
                var t = DeleteRecordsRequest.DeleteRecordsTopic()
                t.name = name
                t.partitions = tps.map { tp in
                    var p = DeleteRecordsRequest.DeleteRecordsPartition()
                    p.partitionIndex = tp.partition
                    p.offset = offsets[tp]!
                    return p
                }
                return t
            }
            let resp = try await conn.send(req, version: try conn.version(for: DeleteRecordsRequest.self, max: 2))
            for t in resp.topics {
                for p in t.partitions {
                    let tp = TopicPartition(t.name, p.partitionIndex)
                    guard p.errorCode == .none else { throw KafkaClientError.broker(p.errorCode, "DeleteRecords \(tp)") }
                    out[tp] = p.lowWatermark
                }
            }
        }
        return out
    }

    /// Every partition of the given topics.
    public func partitions(of topics: [TopicName]) async throws -> [TopicPartition] {
        var out: [TopicPartition] = []
        for t in topics {
            let info = try await cluster.topic(t)
            out += info.partitions.map { TopicPartition(t, $0.partition) }
        }
        return out
    }
}
