import KafkaProtocol
import NIOCore
import Testing
@testable import Broker

/// The classic group protocol without I/O: a fake clock drives every deadline.
@Suite("Group state machine", .timeLimit(.minutes(2)))
struct GroupStateMachineTests {
    typealias M = GroupStateMachine

    static func settings(delay: Int64 = 0) -> M.Settings {
        var s = M.Settings()
        s.initialRebalanceDelayMs = delay
        s.minSessionTimeoutMs = 1000
        return s
    }

    static func request(_ id: String = "", instance: String? = nil, protocols: [String] = ["range"], session: Int32 = 10_000,
                        rebalance: Int32 = 30_000, v4: Bool = true) -> M.JoinRequest {
        M.JoinRequest(memberID: id, groupInstanceID: instance, clientID: "client", clientHost: "/127.0.0.1",
                      sessionTimeoutMs: session, rebalanceTimeoutMs: rebalance, protocolType: "consumer",
                      protocols: protocols.map { .init(name: $0, metadata: ByteBuffer(string: "meta-\($0)")) },
                      requireKnownMemberID: v4)
    }

    /// Joins through the MEMBER_ID_REQUIRED round trip; returns the member id.
    static func joinNew(_ g: inout M, now: Int64, protocols: [String] = ["range"], session: Int32 = 10_000) -> (String, [M.GroupOutput]) {
        let (first, _) = g.join(request(protocols: protocols, session: session), now: now)
        guard case .now(let r) = first, r.error == .memberIDRequired else { Issue.record("expected MEMBER_ID_REQUIRED"); return ("", []) }
        let (second, out) = g.join(request(r.memberID, protocols: protocols, session: session), now: now)
        #expect(second == .parked(memberID: r.memberID))
        return (r.memberID, out)
    }

    static func error(_ code: ErrorCode, memberID: String) -> M.JoinResult {
        var r = M.JoinResult()
        r.error = code
        r.memberID = memberID
        return r
    }

    static func joins(_ out: [M.GroupOutput]) -> [String: M.JoinResult] {
        var d: [String: M.JoinResult] = [:]
        for o in out { if case .join(let id, let r) = o { d[id] = r } }
        return d
    }

    static func syncs(_ out: [M.GroupOutput]) -> [String: M.SyncResult] {
        var d: [String: M.SyncResult] = [:]
        for o in out { if case .sync(let id, let r) = o { d[id] = r } }
        return d
    }

    @Test func firstMemberBecomesLeaderAndGroupStabilisesAfterSync() {
        var g = M(groupID: "g", settings: Self.settings(), now: 0)
        let (a, out) = Self.joinNew(&g, now: 0)
        let joined = Self.joins(out)
        #expect(joined[a]?.generation == 1)
        #expect(joined[a]?.leader == a)
        #expect(joined[a]?.members.map(\.id) == [a], "the leader gets the member list")
        #expect(g.phase == .completingRebalance)
        let (sync, syncOut) = g.sync(memberID: a, groupInstanceID: nil, generation: 1, protocolType: "consumer", protocolName: "range",
                                     assignments: [a: ByteBuffer(string: "all")], now: 10)
        #expect(sync == .parked)
        #expect(Self.syncs(syncOut)[a]?.assignment == ByteBuffer(string: "all"))
        #expect(syncOut.contains(.persist))
        #expect(g.phase == .stable)
        #expect(g.heartbeat(memberID: a, groupInstanceID: nil, generation: 1, now: 20) == .none)
    }

    @Test func initialDelayCollectsMembersIntoOneGeneration() {
        var g = M(groupID: "g", settings: Self.settings(delay: 3000), now: 0)
        let (a, outA) = Self.joinNew(&g, now: 0)
        #expect(Self.joins(outA).isEmpty, "the first join waits for the initial delay")
        let (b, outB) = Self.joinNew(&g, now: 1000)
        #expect(Self.joins(outB).isEmpty)
        #expect(g.tick(now: 3500).isEmpty, "each new member extends the delay")
        let done = Self.joins(g.tick(now: 4000))
        #expect(Set(done.keys) == [a, b])
        #expect(done[a]?.generation == 1 && done[b]?.generation == 1)
        #expect(done[a]?.members.count == 2 && done[b]?.members.isEmpty == true)
        #expect(g.nextDeadline != nil)
    }

    @Test func protocolChoiceAndInconsistentProtocols() {
        var g = M(groupID: "g", settings: Self.settings(delay: 100), now: 0)
        _ = Self.joinNew(&g, now: 0, protocols: ["cooperative-sticky", "range"])
        _ = Self.joinNew(&g, now: 0, protocols: ["range", "cooperative-sticky"])
        _ = Self.joinNew(&g, now: 0, protocols: ["range"])
        let (bad, _) = g.join(Self.request(protocols: ["roundrobin"]), now: 0)
        #expect(bad == .now({ var r = M.JoinResult(); r.error = .inconsistentGroupProtocol; return r }()))
        _ = g.tick(now: 200)
        #expect(g.protocolName == "range", "the only protocol everyone supports")
    }

    @Test func expiredMemberIsRemovedAndTheOthersRebalance() {
        var g = M(groupID: "g", settings: Self.settings(), now: 0)
        let (a, _) = Self.joinNew(&g, now: 0, session: 5000)
        _ = g.sync(memberID: a, groupInstanceID: nil, generation: 1, protocolType: nil, protocolName: nil, assignments: [:], now: 0)
        let (b, outB) = Self.joinNew(&g, now: 100, session: 5000)
        #expect(g.phase == .preparingRebalance)
        #expect(Self.joins(outB).isEmpty, "waits for the existing member to rejoin")
        #expect(g.heartbeat(memberID: a, groupInstanceID: nil, generation: 1, now: 200) == .rebalanceInProgress)
        let (ra, outA) = g.join(Self.request(a, session: 5000), now: 300)
        #expect(ra == .parked(memberID: a))
        let gen2 = Self.joins(outA)
        #expect(gen2[a]?.generation == 2 && gen2[b]?.generation == 2)
        let (_, s) = g.sync(memberID: a, groupInstanceID: nil, generation: 2, protocolType: nil, protocolName: nil,
                            assignments: [a: ByteBuffer(string: "p0"), b: ByteBuffer(string: "p1")], now: 400)
        #expect(Self.syncs(s)[a] != nil)
        // b never syncs nor heartbeats: it expires 5 s after its last contact.
        #expect(g.tick(now: 5000).isEmpty)
        #expect(g.heartbeat(memberID: a, groupInstanceID: nil, generation: 2, now: 5000) == .none)
        let expired = g.tick(now: 5400)
        #expect(g.members[b] == nil)
        #expect(g.phase == .preparingRebalance || g.phase == .completingRebalance)
        if g.phase == .preparingRebalance {
            #expect(g.heartbeat(memberID: a, groupInstanceID: nil, generation: 2, now: 5500) == .rebalanceInProgress)
            let (_, out) = g.join(Self.request(a, session: 5000), now: 5600)
            #expect(Self.joins(out)[a]?.generation == 3)
        } else {
            #expect(Self.joins(expired)[a]?.generation == 3)
        }
    }

    @Test func leaveTriggersRebalanceAndUnknownMembersAreRefused() {
        var g = M(groupID: "g", settings: Self.settings(delay: 50), now: 0)
        let (a, _) = Self.joinNew(&g, now: 0)
        let (b, _) = Self.joinNew(&g, now: 0)
        _ = g.tick(now: 100)
        _ = g.sync(memberID: g.leaderID!, groupInstanceID: nil, generation: 1, protocolType: nil, protocolName: nil, assignments: [:], now: 100)
        _ = g.sync(memberID: g.leaderID == a ? b : a, groupInstanceID: nil, generation: 1, protocolType: nil, protocolName: nil, assignments: nil, now: 100)
        #expect(g.phase == .stable)
        let (errors, _) = g.leave([(b, nil), ("nobody", nil)], now: 200)
        #expect(errors == [.none, .unknownMemberID])
        #expect(g.phase == .preparingRebalance)
        let (_, out) = g.join(Self.request(a), now: 300)
        #expect(Self.joins(out)[a]?.generation == 2)
        #expect(g.heartbeat(memberID: b, groupInstanceID: nil, generation: 2, now: 300) == .unknownMemberID)
        #expect(g.heartbeat(memberID: a, groupInstanceID: nil, generation: 1, now: 300) == .illegalGeneration)
        let (_, last) = g.leave([(a, nil)], now: 400)
        #expect(g.phase == .preparingRebalance || g.phase == .empty)
        _ = g.tick(now: 100_000)
        #expect(g.phase == .empty)
        #expect(last.contains(.persist) || g.generation == 3)
    }

    @Test func staticMemberRestartKeepsItsAssignmentWithoutRebalance() {
        var g = M(groupID: "g", settings: Self.settings(), now: 0)
        let (p, _) = g.join(Self.request(instance: "host-1"), now: 0)
        guard case .parked(let first) = p else { Issue.record("static members join directly"); return }
        _ = g.sync(memberID: first, groupInstanceID: "host-1", generation: 1, protocolType: nil, protocolName: nil,
                   assignments: [first: ByteBuffer(string: "mine")], now: 10)
        #expect(g.phase == .stable)
        let (again, out) = g.join(Self.request(instance: "host-1"), now: 20)
        guard case .now(let r) = again else { Issue.record("expected an immediate answer"); return }
        #expect(r.generation == 1 && r.memberID != first)
        #expect(g.phase == .stable && out.contains(.persist))
        #expect(g.heartbeat(memberID: first, groupInstanceID: "host-1", generation: 1, now: 30) != .none, "old id is fenced")
        let (s, _) = g.sync(memberID: r.memberID, groupInstanceID: "host-1", generation: 1, protocolType: nil, protocolName: nil, assignments: nil, now: 40)
        #expect(s == .now(M.SyncResult(protocolType: "consumer", protocolName: "range", assignment: ByteBuffer(string: "mine"))))
    }

    @Test func aMemberPastItsRebalanceTimeoutLeavesAndItsLateCommitIsRefused() {
        // Two members in a stable generation; a third joins, so both must rejoin within their
        // rebalance timeout (the consumer's max.poll.interval.ms). `a` is busy and does not.
        var g = M(groupID: "g", settings: Self.settings(delay: 50), now: 0)
        let (a, _) = Self.joinNew(&g, now: 0)
        let (b, _) = Self.joinNew(&g, now: 0)
        _ = g.tick(now: 100)
        let leader = g.leaderID!
        _ = g.sync(memberID: leader, groupInstanceID: nil, generation: 1, protocolType: nil, protocolName: nil, assignments: [:], now: 100)
        _ = g.sync(memberID: leader == a ? b : a, groupInstanceID: nil, generation: 1, protocolType: nil, protocolName: nil, assignments: nil, now: 100)
        #expect(g.phase == .stable)
        let (c, _) = Self.joinNew(&g, now: 1_000)
        _ = g.join(Self.request(b), now: 1_100)
        // a keeps heartbeating (its session is alive) but never rejoins: 30 s rebalance timeout.
        for t in stride(from: Int64(2_000), through: 30_000, by: 2_000) {
            #expect(g.heartbeat(memberID: a, groupInstanceID: nil, generation: 1, now: t) == .rebalanceInProgress)
            _ = g.tick(now: t)
        }
        let out = g.tick(now: 31_100)
        #expect(g.members[a] == nil, "a is removed once the join phase times out")
        #expect(Set(Self.joins(out).keys) == [b, c], "the others move on to generation 2 without it")
        #expect(g.generation == 2)
        // Its late work is refused as Kafka refuses it, and it can come back as a new member.
        #expect(g.validateCommit(memberID: a, groupInstanceID: nil, generation: 1, now: 31_200) == .unknownMemberID)
        #expect(g.heartbeat(memberID: a, groupInstanceID: nil, generation: 1, now: 31_200) == .unknownMemberID)
        let (rejoin, _) = g.join(Self.request(a), now: 31_300)
        #expect(rejoin == .now(Self.error(.unknownMemberID, memberID: a)), "an unknown member id is refused")
        let (fresh, _) = Self.joinNew(&g, now: 31_400)
        #expect(!fresh.isEmpty && fresh != a && g.members[fresh] != nil)
    }

    @Test func aDuplicateInstanceIDFencesTheOlderMember() {
        var g = M(groupID: "g", settings: Self.settings(), now: 0)
        let (p, _) = g.join(Self.request(instance: "host-1"), now: 0)
        guard case .parked(let old) = p else { Issue.record("static members join directly"); return }
        _ = g.sync(memberID: old, groupInstanceID: "host-1", generation: 1, protocolType: nil, protocolName: nil,
                   assignments: [old: ByteBuffer(string: "mine")], now: 10)
        // A second process starts with the same group.instance.id (a restart, or a misconfiguration).
        let (again, _) = g.join(Self.request(instance: "host-1"), now: 20)
        guard case .now(let r) = again else { Issue.record("expected an immediate answer"); return }
        #expect(r.generation == 1 && r.memberID != old, "no rebalance: same generation, new member id")
        #expect(g.heartbeat(memberID: old, groupInstanceID: "host-1", generation: 1, now: 30) == .fencedInstanceID)
        #expect(g.validateCommit(memberID: old, groupInstanceID: "host-1", generation: 1, now: 30) == .fencedInstanceID)
        let (s, _) = g.sync(memberID: old, groupInstanceID: "host-1", generation: 1, protocolType: nil, protocolName: nil, assignments: nil, now: 30)
        #expect(s == .now(M.SyncResult(error: .fencedInstanceID)))
        let (l, _) = g.leave([(old, "host-1")], now: 40)
        #expect(l == [.fencedInstanceID], "the fenced member cannot take the new one out either")
        #expect(g.heartbeat(memberID: r.memberID, groupInstanceID: "host-1", generation: 1, now: 50) == .none)
    }

    @Test func commitChecks() {
        var g = M(groupID: "g", settings: Self.settings(), now: 0)
        #expect(g.validateCommit(memberID: "", groupInstanceID: nil, generation: -1, now: 0) == .none, "standalone commits to an empty group")
        let (a, _) = Self.joinNew(&g, now: 0)
        #expect(g.validateCommit(memberID: a, groupInstanceID: nil, generation: 1, now: 0) == .rebalanceInProgress)
        _ = g.sync(memberID: a, groupInstanceID: nil, generation: 1, protocolType: nil, protocolName: nil, assignments: [:], now: 0)
        #expect(g.validateCommit(memberID: a, groupInstanceID: nil, generation: 1, now: 0) == .none)
        #expect(g.validateCommit(memberID: a, groupInstanceID: nil, generation: 0, now: 0) == .illegalGeneration)
        #expect(g.validateCommit(memberID: "x", groupInstanceID: nil, generation: 1, now: 0) == .unknownMemberID)
        #expect(g.validateCommit(memberID: "", groupInstanceID: nil, generation: -1, now: 0) == .unknownMemberID,
                "standalone commits are refused while the group has members")
    }

    @Test func sessionTimeoutBoundsAndSnapshotRestore() {
        var g = M(groupID: "g", settings: Self.settings(), now: 0)
        let (tooShort, _) = g.join(Self.request(session: 10), now: 0)
        #expect(tooShort == .now({ var r = M.JoinResult(); r.error = .invalidSessionTimeout; return r }()))
        let (a, _) = Self.joinNew(&g, now: 0, session: 7000)
        _ = g.sync(memberID: a, groupInstanceID: nil, generation: 1, protocolType: nil, protocolName: nil,
                   assignments: [a: ByteBuffer(string: "x")], now: 0)
        let restored = M(groupID: "g", settings: Self.settings(), snapshot: g.snapshot, now: 100_000)
        #expect(restored.phase == .stable && restored.generation == 1 && restored.leaderID == a)
        #expect(restored.members[a]?.assignment == ByteBuffer(string: "x"))
        #expect(restored.nextDeadline == 107_000, "restored members must heartbeat within their session")
    }
}
