import KafkaProtocol
import NIOCore

/// Records of the internal `__consumer_offsets` topic, in Kafka's layout so existing tools can read
/// them: keys and values start with an int16 schema version; strings have int16 lengths.
///
/// - Offset commit: key v1 `{group, topic, partition}`, value v3 `{offset, leader_epoch, metadata, commit_timestamp}`.
/// - Group metadata: key v2 `{group}`, value v3 `{protocol_type, generation, protocol, leader,
///   current_state_timestamp, members[...]}`.
/// A null value is a tombstone (the commit or the group was deleted); compaction keeps the latest.
enum OffsetsTopicRecord: Equatable {
    case offset(group: GroupID, topic: TopicName, partition: Int32, CommittedOffset?)
    case group(GroupID, GroupStateMachine.Snapshot?)

    var groupID: GroupID {
        switch self {
        case .offset(let g, _, _, _): return g
        case .group(let g, _): return g
        }
    }

    func encode() throws -> (key: ByteBuffer, value: ByteBuffer?) {
        var key = ByteBuffer()
        var value: ByteBuffer? = nil
        switch self {
        case .offset(let g, let t, let p, let c):
            key.writeInteger(Int16(1), endianness: .big)
            try Self.writeString(g.rawValue, &key)
            try Self.writeString(t.rawValue, &key)
            key.writeInteger(p, endianness: .big)
            if let c {
                var v = ByteBuffer()
                v.writeInteger(Int16(3), endianness: .big)
                v.writeInteger(c.offset, endianness: .big)
                v.writeInteger(c.leaderEpoch, endianness: .big)
                try Self.writeString(c.metadata, &v)
                v.writeInteger(c.commitTimestamp, endianness: .big)
                value = v
            }
        case .group(let g, let s):
            key.writeInteger(Int16(2), endianness: .big)
            try Self.writeString(g.rawValue, &key)
            if let s {
                var v = ByteBuffer()
                v.writeInteger(Int16(3), endianness: .big)
                try Self.writeString(s.protocolType, &v)
                v.writeInteger(s.generation, endianness: .big)
                try Self.writeNullableString(s.protocolName, &v)
                try Self.writeNullableString(s.leader, &v)
                v.writeInteger(s.stateTimestamp, endianness: .big)
                v.writeInteger(Int32(s.members.count), endianness: .big)
                for m in s.members {
                    try Self.writeString(m.memberID, &v)
                    try Self.writeNullableString(m.groupInstanceID, &v)
                    try Self.writeString(m.clientID, &v)
                    try Self.writeString(m.clientHost, &v)
                    v.writeInteger(m.rebalanceTimeoutMs, endianness: .big)
                    v.writeInteger(m.sessionTimeoutMs, endianness: .big)
                    v.writeInteger(Int32(m.subscription.readableBytes), endianness: .big)
                    v.writeImmutableBuffer(m.subscription)
                    v.writeInteger(Int32(m.assignment.readableBytes), endianness: .big)
                    v.writeImmutableBuffer(m.assignment)
                }
                value = v
            }
        }
        return (key, value)
    }

    /// Decodes a record; nil for keys of kinds this broker does not use (e.g. transaction markers).
    static func decode(key: ByteBuffer, value: ByteBuffer?) throws -> OffsetsTopicRecord? {
        var k = key
        let version = try k.readKafkaInt16()
        switch version {
        case 0, 1:
            let g = GroupID(try k.readKafkaString(flexible: false))
            let t = TopicName(try k.readKafkaString(flexible: false))
            let p = try k.readKafkaInt32()
            guard var v = value else { return .offset(group: g, topic: t, partition: p, nil) }
            let vv = try v.readKafkaInt16()
            let offset = try v.readKafkaInt64()
            let epoch: Int32 = vv >= 3 ? try v.readKafkaInt32() : -1
            let metadata = try v.readKafkaNullableString(flexible: false) ?? ""
            let ts = try v.readKafkaInt64()
            return .offset(group: g, topic: t, partition: p, CommittedOffset(offset: offset, leaderEpoch: epoch, metadata: metadata, commitTimestamp: ts))
        case 2:
            let g = GroupID(try k.readKafkaString(flexible: false))
            guard var v = value else { return .group(g, nil) }
            let vv = try v.readKafkaInt16()
            let protocolType = try v.readKafkaString(flexible: false)
            let generation = try v.readKafkaInt32()
            let proto = try v.readKafkaNullableString(flexible: false)
            let leader = try v.readKafkaNullableString(flexible: false)
            let ts: Int64 = vv >= 2 ? try v.readKafkaInt64() : -1
            let count = try v.readKafkaInt32()
            var members: [GroupStateMachine.Snapshot.SnapshotMember] = []
            for _ in 0..<max(0, count) {
                let id = try v.readKafkaString(flexible: false)
                let instance: String? = vv >= 3 ? try v.readKafkaNullableString(flexible: false) : nil
                let client = try v.readKafkaString(flexible: false)
                let host = try v.readKafkaString(flexible: false)
                let rebalance: Int32 = vv >= 1 ? try v.readKafkaInt32() : 0
                let session = try v.readKafkaInt32()
                let sub = try v.readKafkaBytes(flexible: false)
                let assign = try v.readKafkaBytes(flexible: false)
                members.append(.init(memberID: id, groupInstanceID: instance, clientID: client, clientHost: host,
                                     rebalanceTimeoutMs: rebalance, sessionTimeoutMs: session, subscription: sub, assignment: assign))
            }
            return .group(g, .init(protocolType: protocolType, generation: generation, protocolName: proto, leader: leader,
                                   stateTimestamp: ts, members: members))
        default:
            return nil
        }
    }

    private static func writeString(_ s: String, _ b: inout ByteBuffer) throws {
        guard let n = Int16(exactly: s.utf8.count) else {
            throw KafkaProtocolError.invalidLength("__consumer_offsets string", s.utf8.count)
        }
        b.writeInteger(n, endianness: .big)
        b.writeString(s)
    }

    private static func writeNullableString(_ s: String?, _ b: inout ByteBuffer) throws {
        guard let s else { b.writeInteger(Int16(-1), endianness: .big); return }
        try writeString(s, &b)
    }
}

/// A committed offset as the coordinator keeps it.
public struct CommittedOffset: Sendable, Equatable {
    public var offset: Int64
    public var leaderEpoch: Int32
    public var metadata: String
    public var commitTimestamp: Int64
}

extension GroupID {
    /// Kafka's `abs(groupId.hashCode) % partitions`, using Java's String.hashCode over UTF-16 units.
    func offsetsPartition(count: Int32) -> Int32 {
        var h: Int32 = 0
        for u in rawValue.utf16 { h = h &* 31 &+ Int32(u) }
        let positive = h == Int32.min ? 0 : abs(h)
        return positive % count
    }
}
