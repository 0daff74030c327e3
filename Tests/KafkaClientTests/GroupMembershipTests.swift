import KafkaProtocol
import NIOCore
import Testing
@testable import KafkaClient

/// The consumer's group membership driven without sockets: the test plays the coordinator.
@Suite("Group membership", .timeLimit(.minutes(1)))
struct GroupMembershipTests {
    typealias M = GroupMembership

    static func membership(cooperative: Bool = false, autoCommit: Bool = true) -> M {
        var c = ConsumerConfig(groupID: "g")
        c.assignors = cooperative ? [CooperativeStickyAssignor()] : [RangeAssignor()]
        c.heartbeatIntervalMs = 1_000
        c.enableAutoCommit = autoCommit
        var m = M(settings: .init(c, group: "g"))
        m.subscribe(["t"])
        return m
    }

    static func tps(_ ps: [Int32]) -> [TopicPartition] { ps.map { TopicPartition("t", $0) } }

    static func joinResponse(_ code: ErrorCode = .none, member: String = "m1", leader: String = "m1", generation: Int32 = 1,
                             protocolName: String = "range", members: [String] = ["m1"]) -> JoinGroupResponse {
        var r = JoinGroupResponse()
        r.errorCode = code
        r.memberID = member
        r.leader = leader
        r.generationID = generation
        r.protocolName = protocolName
        var sub = ConsumerProtocolSubscription()
        sub.topics = ["t"]
        r.members = members.map { .init(memberID: $0, metadata: try! sub.encodedWithVersion(1)) }
        return r
    }

    static func syncResponse(_ ps: [Int32]) -> SyncGroupResponse { syncResponse(.none, ps) }

    static func syncResponse(_ code: ErrorCode, _ ps: [Int32]) -> SyncGroupResponse {
        var a = ConsumerProtocolAssignment()
        a.assignedPartitions = [.init(topic: "t", partitions: ps)]
        var r = SyncGroupResponse()
        r.errorCode = code
        r.assignment = try! a.encodedWithVersion(1)
        return r
    }

    /// Names of the actions, for compact expectations.
    static func names(_ actions: [M.Action]) -> [String] {
        actions.map {
            switch $0 {
            case .sendJoin(let j): return "join(\(j.memberID))"
            case .computeAssignment(let p, let s): return "assign-as-leader(\(p),\(s.count))"
            case .sendSync(let s): return "sync(\(s.generationID),\(s.assignments.count))"
            case .commitBeforeRevoke(let tps): return "commit\(tps.map(\.partition))"
            case .revoke(let tps, let lost): return "\(lost ? "lose" : "revoke")\(tps.map(\.partition))"
            case .assign(let tps): return "assign\(tps.map(\.partition))"
            case .sendLeave(let l): return "leave(\(l.memberID))"
            case .fail(let e): return "fail(\(e.code?.name ?? "-"))"
            }
        }
    }

    /// Joins as the only member (leader) and ends stable with `ps`.
    static func stable(_ m: inout M, _ ps: [Int32], cooperative: Bool = false, now: Int64 = 0) {
        _ = m.poll(now: now)
        _ = m.joined(joinResponse(.memberIDRequired, member: "m1"), now: now)
        _ = m.joined(joinResponse(protocolName: cooperative ? "cooperative-sticky" : "range"), now: now)
        _ = m.assigned(["m1": tps(ps)])
        _ = m.synced(syncResponse(ps), now: now)
    }

    @Test func joinThenSyncThenStable() {
        var m = Self.membership()
        #expect(Self.names(m.poll(now: 0)) == ["join()"])
        #expect(m.phase == .joining)
        // The broker asks for a member id first (KIP-394), then the join completes with us as leader.
        #expect(Self.names(m.joined(Self.joinResponse(.memberIDRequired, member: "m1"), now: 1)) == ["join(m1)"])
        #expect(Self.names(m.joined(Self.joinResponse(), now: 2)) == ["assign-as-leader(range,1)"])
        #expect(Self.names(m.assigned(["m1": Self.tps([0, 1])])) == ["sync(1,1)"])
        #expect(Self.names(m.synced(Self.syncResponse([0, 1]), now: 3)) == ["assign[0, 1]"])
        #expect(m.phase == .stable && m.assignment == Self.tps([0, 1]) && m.generation == 1)
        #expect(Self.names(m.poll(now: 4)).isEmpty, "a stable member does not rejoin")
        // Heartbeats every heartbeat.interval.ms, one at a time.
        #expect(m.heartbeat(now: 500) == nil)
        let hb = m.heartbeat(now: 1_003)
        #expect(hb?.generationID == 1 && hb?.memberID == "m1")
        #expect(m.heartbeat(now: 1_004) == nil, "one heartbeat in flight")
        #expect(m.heartbeatAnswered(ErrorCode.none, now: 1_010) == nil)
        #expect(m.nextHeartbeatAtMs == 2_010)
    }

    @Test func aFollowerSyncsWithoutComputingTheAssignment() {
        var m = Self.membership()
        _ = m.poll(now: 0)
        #expect(Self.names(m.joined(Self.joinResponse(member: "m2", leader: "m1"), now: 1)) == ["sync(1,0)"])
        #expect(Self.names(m.synced(Self.syncResponse([3]), now: 2)) == ["assign[3]"])
    }

    @Test func anotherMemberLeavingRebalancesTheGroup() {
        var m = Self.membership()
        Self.stable(&m, [0, 1])
        // The other member left: the coordinator answers the heartbeat with REBALANCE_IN_PROGRESS.
        let hb = m.heartbeat(now: 1_000)
        #expect(hb != nil)
        #expect(m.heartbeatAnswered(.rebalanceInProgress, now: 1_001) == nil)
        // Eager (range): commit what was consumed, give everything up, then join again.
        #expect(Self.names(m.poll(now: 1_002)) == ["commit[0, 1]", "revoke[0, 1]", "join(m1)"])
        #expect(Self.names(m.joined(Self.joinResponse(generation: 2), now: 1_003)) == ["assign-as-leader(range,1)"])
        _ = m.assigned(["m1": Self.tps([0, 1, 2, 3])])
        #expect(Self.names(m.synced(Self.syncResponse([0, 1, 2, 3]), now: 1_004)) == ["assign[0, 1, 2, 3]"])
        #expect(m.generation == 2 && m.assignment.count == 4)
    }

    @Test func illegalGenerationLosesThePartitionsWithoutCommitting() {
        var m = Self.membership()
        Self.stable(&m, [0, 1])
        _ = m.heartbeat(now: 1_000)
        #expect(m.heartbeatAnswered(.illegalGeneration, now: 1_001) == nil)
        // Another member may own them now: no commit, reported as lost; the member id is kept.
        #expect(Self.names(m.poll(now: 1_002)) == ["lose[0, 1]", "join(m1)"])
        #expect(m.generation == -1)
    }

    @Test func unknownMemberIDLosesThePartitionsAndJoinsAsANewMember() {
        var m = Self.membership()
        Self.stable(&m, [0, 1])
        // A commit learns it first (the session expired while the member was busy).
        #expect(m.commitAnswered([.unknownMemberID]) == nil)
        #expect(Self.names(m.poll(now: 10)) == ["lose[0, 1]", "join()"], "joins again without the old member id")
        // A join refused with UNKNOWN_MEMBER_ID also starts over as a new member.
        _ = m.joined(Self.joinResponse(.memberIDRequired, member: "m9"), now: 11)
        #expect(Self.names(m.joined(Self.joinResponse(.unknownMemberID, member: ""), now: 12)) == ["join()"])
    }

    @Test func aFencedStaticMemberStopsForGood() {
        var c = ConsumerConfig(groupID: "g")
        c.groupInstanceID = "host-1"
        var m = M(settings: .init(c, group: "g"))
        m.subscribe(["t"])
        Self.stable(&m, [0])
        _ = m.heartbeat(now: 5_000)
        let fatal = m.heartbeatAnswered(.fencedInstanceID, now: 5_001)
        #expect(fatal?.code == .fencedInstanceID)
        #expect(Self.names(m.poll(now: 5_002)).isEmpty && m.phase == .left)
    }

    @Test func syncDuringARebalanceJoinsAgain() {
        var m = Self.membership()
        _ = m.poll(now: 0)
        _ = m.joined(Self.joinResponse(member: "m2", leader: "m1"), now: 1)
        #expect(Self.names(m.synced(Self.syncResponse(.rebalanceInProgress, []), now: 2)) == ["join(m2)"])
        #expect(Self.names(m.synced(Self.syncResponse(.illegalGeneration, []), now: 3)) == ["join(m2)"])
    }

    @Test func cooperativeStickyCommitsOnlyWhatMovesAndRejoinsToHandItOver() {
        var m = Self.membership(cooperative: true)
        Self.stable(&m, [0, 1, 2, 3], cooperative: true)
        // A second member joined: heartbeat says rebalance. Cooperative: nothing is revoked up front.
        _ = m.heartbeat(now: 1_000)
        _ = m.heartbeatAnswered(.rebalanceInProgress, now: 1_001)
        let rejoin = m.poll(now: 1_002)
        #expect(Self.names(rejoin) == ["join(m1)"])
        if case .sendJoin(let j) = rejoin.first {
            let sub = try? ConsumerProtocolSubscription.decode(j.protocols[0].metadata)
            #expect(sub?.ownedPartitions.first?.partitions == [0, 1, 2, 3], "the join says what this member owns")
        }
        _ = m.joined(Self.joinResponse(generation: 2, protocolName: "cooperative-sticky", members: ["m1", "m2"]), now: 1_003)
        _ = m.assigned(["m1": Self.tps([0, 1]), "m2": []])
        // The new assignment keeps 0 and 1: only 2 and 3 are committed and revoked…
        #expect(Self.names(m.synced(Self.syncResponse([0, 1]), now: 1_004)) == ["commit[2, 3]", "revoke[2, 3]"])
        // …and the member joins once more so the other member can get them.
        #expect(m.needsRejoin)
        #expect(Self.names(m.poll(now: 1_005)) == ["join(m1)"])
        _ = m.joined(Self.joinResponse(generation: 3, protocolName: "cooperative-sticky", members: ["m1", "m2"]), now: 1_006)
        _ = m.assigned(["m1": Self.tps([0, 1]), "m2": Self.tps([2, 3])])
        #expect(Self.names(m.synced(Self.syncResponse([0, 1]), now: 1_007)).isEmpty)
        #expect(!m.needsRejoin && m.assignment == Self.tps([0, 1]))
    }

    @Test func leavingCommitsRevokesAndSendsLeaveGroup() {
        var m = Self.membership()
        Self.stable(&m, [0])
        #expect(Self.names(m.leave()) == ["commit[0]", "revoke[0]", "leave(m1)"])
        #expect(m.phase == .left && m.heartbeat(now: 99_999) == nil)
        var quiet = Self.membership(autoCommit: false)
        Self.stable(&quiet, [0])
        #expect(Self.names(quiet.leave()) == ["revoke[0]", "leave(m1)"], "no commit without auto-commit")
    }

    @Test func aLostJoinIsRetriedOnTheNextPoll() {
        var m = Self.membership()
        _ = m.poll(now: 0)
        m.joinFailed()
        #expect(Self.names(m.poll(now: 1)) == ["join()"])
    }
}
