import Broker
import Foundation
import KafkaProtocol
import KafkaWire
import NIOCore
import Testing
import TestSupport

/// Group edge cases through the wire, as a Kafka 3.x consumer meets them: a member that misses
/// its rebalance timeout (max.poll.interval.ms) and a static member that restarts or is duplicated.
/// `GroupStateMachineTests` covers the same rules with a fake clock; these show the handlers carry
/// them to a client with the right error codes.
@Suite("Group edges over the wire", .timeLimit(.minutes(2)))
struct GroupEdgeWireTests {
    static func joinRequest(group: GroupID, member: String = "", instance: String? = nil,
                            rebalanceTimeoutMs: Int32 = 10_000) throws -> JoinGroupRequest {
        var j = JoinGroupRequest()
        j.groupID = group
        j.sessionTimeoutMs = 10_000
        j.rebalanceTimeoutMs = rebalanceTimeoutMs
        j.memberID = member
        j.groupInstanceID = instance
        j.protocolType = "consumer"
        var sub = ConsumerProtocolSubscription()
        sub.topics = ["t"]
        j.protocols = [.init(name: "range", metadata: try sub.encodedWithVersion(0))]
        return j
    }

    static func sync(_ conn: KafkaConnection, group: GroupID, generation: Int32, member: String, instance: String? = nil,
                     assignments: [String: [Int32]] = [:]) async throws -> SyncGroupResponse {
        var s = SyncGroupRequest()
        s.groupID = group
        s.generationID = generation
        s.memberID = member
        s.groupInstanceID = instance
        s.assignments = try assignments.map { id, partitions in
            var a = ConsumerProtocolAssignment()
            a.assignedPartitions = [.init(topic: "t", partitions: partitions)]
            return .init(memberID: id, assignment: try a.encodedWithVersion(0))
        }
        return try await conn.send(s, version: 5)
    }

    static func heartbeat(_ conn: KafkaConnection, group: GroupID, generation: Int32, member: String,
                          instance: String? = nil) async throws -> ErrorCode {
        var h = HeartbeatRequest()
        h.groupID = group
        h.generationID = generation
        h.memberID = member
        h.groupInstanceID = instance
        return try await conn.send(h, version: 4).errorCode
    }

    static func commit(_ conn: KafkaConnection, group: GroupID, generation: Int32, member: String,
                       instance: String? = nil, offset: Int64) async throws -> ErrorCode {
        var c = OffsetCommitRequest()
        c.groupID = group
        c.generationIDOrMemberEpoch = generation
        c.memberID = member
        c.groupInstanceID = instance
        c.topics = [.init(name: "t", partitions: [.init(partitionIndex: 0, committedOffset: offset)])]
        return try await conn.send(c, version: 8).topics[0].partitions[0].errorCode
    }

    /// Creates topic "t" on a connection of its own (auto-created by Metadata).
    static func createTopicT(_ b: InProcessBroker) async throws {
        let setup = try await b.connect()
        _ = try await setup.send(MetadataRequest(topics: [.init(name: "t")]))
        await setup.close()
    }

    /// Joins as a new dynamic member (the MEMBER_ID_REQUIRED round trip included).
    static func joinNew(_ conn: KafkaConnection, group: GroupID, rebalanceTimeoutMs: Int32 = 10_000) async throws -> JoinGroupResponse {
        let first = try await conn.send(try joinRequest(group: group, rebalanceTimeoutMs: rebalanceTimeoutMs), version: 5)
        #expect(first.errorCode == .memberIDRequired)
        return try await conn.send(try joinRequest(group: group, member: first.memberID, rebalanceTimeoutMs: rebalanceTimeoutMs), version: 5)
    }

    @Test func aMemberThatMissesItsRebalanceTimeoutIsRemovedAndItsLateCommitRefused() async throws {
        let b = try await InProcessBroker()
        try await Self.createTopicT(b)
        let slowConn = try await b.connect()
        let otherConn = try await b.connect()
        let group: GroupID = "slow-poller"

        // The slow member is alone in generation 1, with a short max.poll.interval.ms.
        let slow = try await Self.joinNew(slowConn, group: group, rebalanceTimeoutMs: 1_500)
        #expect(slow.errorCode == .none && slow.generationID == 1)
        #expect(try await Self.sync(slowConn, group: group, generation: 1, member: slow.memberID,
                                    assignments: [slow.memberID: [0]]).errorCode == .none)
        #expect(try await Self.commit(slowConn, group: group, generation: 1, member: slow.memberID, offset: 5) == .none)

        // Another member joins; the slow one is busy and never rejoins. The other member's join
        // completes once the join phase times out (the largest rebalance timeout of the members,
        // as in Kafka), without the slow one.
        let other = try await Self.joinNew(otherConn, group: group, rebalanceTimeoutMs: 1_500)
        #expect(other.errorCode == .none && other.generationID == 2)
        #expect(other.leader == other.memberID && other.members.map(\.memberID) == [other.memberID],
                "the generation goes on without the member that missed its rebalance timeout")
        #expect(try await Self.sync(otherConn, group: group, generation: 2, member: other.memberID,
                                    assignments: [other.memberID: [0]]).errorCode == .none)

        // The slow member's late work is refused as Kafka refuses it…
        #expect(try await Self.commit(slowConn, group: group, generation: 1, member: slow.memberID, offset: 9) == .unknownMemberID)
        #expect(try await Self.heartbeat(slowConn, group: group, generation: 1, member: slow.memberID) == .unknownMemberID)
        var f = OffsetFetchRequest()
        f.groupID = group
        f.topics = nil
        #expect(try await otherConn.send(f, version: 7).topics.first?.partitions.first?.committedOffset == 5,
                "the refused commit changed nothing")
        // …its old member id cannot rejoin, and it comes back cleanly as a new member: the other
        // member is told to rejoin, and both land in generation 3.
        let stale = try await slowConn.send(try Self.joinRequest(group: group, member: slow.memberID), version: 5)
        #expect(stale.errorCode == .unknownMemberID)
        let required = try await slowConn.send(try Self.joinRequest(group: group), version: 5)
        #expect(required.errorCode == .memberIDRequired)
        let rejoinRequest = try Self.joinRequest(group: group, member: required.memberID)
        async let slowAgain = slowConn.send(rejoinRequest, version: 5)
        var told = ErrorCode.none
        for _ in 0..<500 where told != .rebalanceInProgress {
            told = try await Self.heartbeat(otherConn, group: group, generation: 2, member: other.memberID)
            if told != .rebalanceInProgress { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(told == .rebalanceInProgress)
        let otherAgain = try await otherConn.send(try Self.joinRequest(group: group, member: other.memberID, rebalanceTimeoutMs: 1_500), version: 5)
        let rejoined = try await slowAgain
        #expect(rejoined.errorCode == .none && otherAgain.errorCode == .none)
        #expect(rejoined.generationID == 3 && otherAgain.generationID == 3)
        await slowConn.close()
        await otherConn.close()
        await b.stop()
    }

    @Test func aStaticMemberRestartGetsItsAssignmentBackAndFencesTheOldProcess() async throws {
        let b = try await InProcessBroker()
        try await Self.createTopicT(b)
        let group: GroupID = "static-group"
        let oldConn = try await b.connect()
        // Static members join without the MEMBER_ID_REQUIRED round trip.
        let first = try await oldConn.send(try Self.joinRequest(group: group, instance: "host-1"), version: 5)
        #expect(first.errorCode == .none && first.generationID == 1)
        let assigned = try await Self.sync(oldConn, group: group, generation: 1, member: first.memberID, instance: "host-1",
                                           assignments: [first.memberID: [0, 1]])
        #expect(assigned.errorCode == .none)

        // The process restarts (or a second copy starts) with the same group.instance.id.
        let newConn = try await b.connect()
        let again = try await newConn.send(try Self.joinRequest(group: group, instance: "host-1"), version: 5)
        #expect(again.errorCode == .none)
        #expect(again.generationID == 1 && again.memberID != first.memberID, "same generation: no rebalance")
        let back = try await Self.sync(newConn, group: group, generation: 1, member: again.memberID, instance: "host-1")
        #expect(back.errorCode == .none && back.assignment == assigned.assignment, "it gets its assignment back")
        #expect(try await Self.heartbeat(newConn, group: group, generation: 1, member: again.memberID, instance: "host-1") == .none)

        // The older process is fenced on every path.
        #expect(try await Self.heartbeat(oldConn, group: group, generation: 1, member: first.memberID, instance: "host-1") == .fencedInstanceID)
        #expect(try await Self.commit(oldConn, group: group, generation: 1, member: first.memberID, instance: "host-1", offset: 3) == .fencedInstanceID)
        let oldSync = try await Self.sync(oldConn, group: group, generation: 1, member: first.memberID, instance: "host-1")
        #expect(oldSync.errorCode == .fencedInstanceID)
        #expect(try await Self.commit(newConn, group: group, generation: 1, member: again.memberID, instance: "host-1", offset: 3) == .none)
        await oldConn.close()
        await newConn.close()
        await b.stop()
    }
}
