import KafkaProtocol
import NIOCore

/// A consumer's membership in a group (the classic protocol), as a value type without I/O.
///
/// Lifecycle: `unjoined` → JoinGroup (`joining`) → the leader computes the assignment
/// (`assigning`) → SyncGroup (`syncing`) → `stable`, heartbeating every `heartbeat.interval.ms`,
/// until a heartbeat or commit says the group rebalances (join again), that this member was fenced
/// (ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID: its partitions are *lost* — given up without a commit,
/// since another member may own them now), or the consumer leaves (`left`).
///
/// Eager assignors (range) give up every partition before joining again, committing first;
/// cooperative ones (cooperative-sticky) keep what they own, give up only what the new assignment
/// moves elsewhere — committing those first — and join once more so the moved partitions can be
/// handed over. Each method returns the actions the owner performs in order; the owner
/// (``KafkaConsumer``) sends the requests and feeds the answers back, with the time.
struct GroupMembership {
    struct Settings: Sendable {
        var groupID: GroupID
        var instanceID: String?
        var sessionTimeoutMs: Int32
        var rebalanceTimeoutMs: Int32
        var heartbeatIntervalMs: Int64
        var assignors: [any PartitionAssignor]
        /// Commit the positions of partitions before giving them up (`enable.auto.commit`).
        var commitOnRevoke: Bool

        init(_ c: ConsumerConfig, group: GroupID) {
            groupID = group
            instanceID = c.groupInstanceID
            sessionTimeoutMs = c.sessionTimeoutMs
            rebalanceTimeoutMs = c.rebalanceTimeoutMs
            heartbeatIntervalMs = c.heartbeatIntervalMs
            assignors = c.assignors
            commitOnRevoke = c.enableAutoCommit
        }
    }

    enum Phase: Equatable { case unjoined, joining, assigning, syncing, stable, left }

    enum Action {
        case sendJoin(JoinGroupRequest)
        /// This member leads: compute the assignment with the named assignor and call ``assigned(_:now:)``.
        case computeAssignment(protocolName: String, subscriptions: [String: ConsumerProtocolSubscription])
        case sendSync(SyncGroupRequest)
        /// Commit the positions of these partitions now, with the current generation, before they go.
        case commitBeforeRevoke([TopicPartition])
        /// These partitions are no longer this member's; `lost` when they were taken (fencing), not handed back.
        case revoke([TopicPartition], lost: Bool)
        /// These partitions are new to this member: find their positions.
        case assign([TopicPartition])
        case sendLeave(LeaveGroupRequest)
        /// The group refused this member for good (e.g. another instance took its static id).
        case fail(KafkaClientError)
    }

    let settings: Settings
    private(set) var phase: Phase = .unjoined
    private(set) var subscription: [TopicName] = []
    private(set) var memberID = ""
    private(set) var generation: Int32 = -1
    private(set) var protocolName: String?
    private(set) var assignment: [TopicPartition] = []
    private(set) var needsRejoin = false
    /// Partitions were taken from this member; the next ``poll(now:)`` reports them lost.
    private var lostPending = false
    private(set) var nextHeartbeatAtMs: Int64 = .max
    private var heartbeatInFlight = false

    init(settings: Settings) { self.settings = settings }

    private var isCooperative: Bool {
        settings.assignors.first { $0.name == protocolName }?.isCooperative ?? false
    }

    // MARK: - Driving

    /// Subscribes to `topics`; the next ``poll(now:)`` joins.
    mutating func subscribe(_ topics: [TopicName]) {
        subscription = topics
        needsRejoin = true
        if phase == .left { phase = .unjoined }
    }

    /// What to do before fetching: report lost partitions, and (re)join when needed.
    mutating func poll(now: Int64) -> [Action] {
        var out: [Action] = []
        guard phase != .left, !subscription.isEmpty else { return out }
        if lostPending {
            lostPending = false
            if !assignment.isEmpty { out.append(.revoke(assignment, lost: true)) }
            assignment = []
        }
        guard needsRejoin, phase == .stable || phase == .unjoined else { return out }
        if !isCooperative && !assignment.isEmpty {
            if settings.commitOnRevoke { out.append(.commitBeforeRevoke(assignment)) }
            out.append(.revoke(assignment, lost: false))
            assignment = []
        }
        out.append(startJoin())
        return out
    }

    private mutating func startJoin() -> Action {
        phase = .joining
        heartbeatInFlight = false
        nextHeartbeatAtMs = .max
        var join = JoinGroupRequest()
        join.groupID = settings.groupID
        join.sessionTimeoutMs = settings.sessionTimeoutMs
        join.rebalanceTimeoutMs = settings.rebalanceTimeoutMs
        join.memberID = memberID
        join.groupInstanceID = settings.instanceID
        join.protocolType = "consumer"
        var sub = ConsumerProtocolSubscription()
        sub.topics = subscription.map(\.rawValue)
        var owned: [TopicName: [Int32]] = [:]
        for tp in assignment { owned[tp.topic, default: []].append(tp.partition) }
        sub.ownedPartitions = owned.sorted { $0.key < $1.key }.map { .init(topic: $0.key, partitions: $0.value.sorted()) }
        let meta = (try? sub.encodedWithVersion(1)) ?? ByteBuffer()
        join.protocols = settings.assignors.map { .init(name: $0.name, metadata: meta) }
        return .sendJoin(join)
    }

    /// The JoinGroup request failed without an answer (connection lost): join again on the next poll.
    mutating func joinFailed() {
        if phase == .joining || phase == .syncing || phase == .assigning { phase = .unjoined }
        needsRejoin = true
    }

    mutating func joined(_ resp: JoinGroupResponse, now: Int64) -> [Action] {
        switch resp.errorCode {
        case .none:
            break
        case .memberIDRequired:
            memberID = resp.memberID
            return [startJoin()]
        case .unknownMemberID:
            memberID = ""
            return [startJoin()]
        case .illegalGeneration, .rebalanceInProgress, .notCoordinator, .coordinatorNotAvailable, .coordinatorLoadInProgress:
            return [startJoin()]
        default:
            phase = .unjoined
            return [.fail(.broker(resp.errorCode, "JoinGroup \(settings.groupID)"))]
        }
        memberID = resp.memberID
        generation = resp.generationID
        protocolName = resp.protocolName
        guard resp.leader == memberID else {
            phase = .syncing
            return [.sendSync(syncRequest([]))]
        }
        phase = .assigning
        var subs: [String: ConsumerProtocolSubscription] = [:]
        for m in resp.members {
            subs[m.memberID] = (try? ConsumerProtocolSubscription.decode(m.metadata)) ?? ConsumerProtocolSubscription()
        }
        return [.computeAssignment(protocolName: resp.protocolName ?? "", subscriptions: subs)]
    }

    /// The leader's plan: member id → partitions.
    mutating func assigned(_ plan: [String: [TopicPartition]]) -> [Action] {
        guard phase == .assigning else { return [] }
        phase = .syncing
        let assignments: [SyncGroupRequest.SyncGroupRequestAssignment] = plan.keys.sorted().map { m in
            var a = ConsumerProtocolAssignment()
            var byTopic: [TopicName: [Int32]] = [:]
            for tp in plan[m] ?? [] { byTopic[tp.topic, default: []].append(tp.partition) }
            a.assignedPartitions = byTopic.sorted { $0.key < $1.key }.map { .init(topic: $0.key, partitions: $0.value.sorted()) }
            return .init(memberID: m, assignment: (try? a.encodedWithVersion(1)) ?? ByteBuffer())
        }
        return [.sendSync(syncRequest(assignments))]
    }

    private func syncRequest(_ assignments: [SyncGroupRequest.SyncGroupRequestAssignment]) -> SyncGroupRequest {
        var sync = SyncGroupRequest()
        sync.groupID = settings.groupID
        sync.generationID = generation
        sync.memberID = memberID
        sync.groupInstanceID = settings.instanceID
        sync.protocolType = "consumer"
        sync.protocolName = protocolName
        sync.assignments = assignments
        return sync
    }

    mutating func synced(_ resp: SyncGroupResponse, now: Int64) -> [Action] {
        switch resp.errorCode {
        case .none:
            break
        case .rebalanceInProgress, .illegalGeneration, .notCoordinator, .coordinatorNotAvailable:
            return [startJoin()]
        case .unknownMemberID:
            memberID = ""
            return [startJoin()]
        default:
            phase = .unjoined
            return [.fail(.broker(resp.errorCode, "SyncGroup \(settings.groupID)"))]
        }
        let decoded = resp.assignment.readableBytes >= 2
            ? ((try? ConsumerProtocolAssignment.decode(resp.assignment)) ?? ConsumerProtocolAssignment())
            : ConsumerProtocolAssignment()
        let new = decoded.assignedPartitions.flatMap { t in t.partitions.map { TopicPartition(t.topic, $0) } }.sorted()
        let newSet = Set(new), oldSet = Set(assignment)
        let revoked = assignment.filter { !newSet.contains($0) }
        let added = new.filter { !oldSet.contains($0) }
        var out: [Action] = []
        if !revoked.isEmpty {
            if settings.commitOnRevoke { out.append(.commitBeforeRevoke(revoked)) }
            out.append(.revoke(revoked, lost: false))
        }
        assignment = new
        if !added.isEmpty { out.append(.assign(added)) }
        phase = .stable
        // Cooperative: what was given up can go to its new owner only in one more rebalance.
        needsRejoin = isCooperative && !revoked.isEmpty
        nextHeartbeatAtMs = now + settings.heartbeatIntervalMs
        return out
    }

    // MARK: - Heartbeats

    /// A heartbeat to send now, if one is due.
    mutating func heartbeat(now: Int64) -> HeartbeatRequest? {
        guard phase == .stable, !heartbeatInFlight, now >= nextHeartbeatAtMs else { return nil }
        heartbeatInFlight = true
        var hb = HeartbeatRequest()
        hb.groupID = settings.groupID
        hb.generationID = generation
        hb.memberID = memberID
        hb.groupInstanceID = settings.instanceID
        return hb
    }

    /// The answer to a heartbeat (nil: it got none); returns a fatal error if the member is fenced for good.
    mutating func heartbeatAnswered(_ code: ErrorCode?, now: Int64) -> KafkaClientError? {
        heartbeatInFlight = false
        nextHeartbeatAtMs = now + settings.heartbeatIntervalMs
        guard let code, phase == .stable else { return nil }
        return groupError(code, "Heartbeat")
    }

    /// The codes of an offset commit made as this member.
    mutating func commitAnswered(_ codes: [ErrorCode]) -> KafkaClientError? {
        for c in codes where c != .none {
            if let fatal = groupError(c, "OffsetCommit") { return fatal }
        }
        return nil
    }

    private mutating func groupError(_ code: ErrorCode, _ what: String) -> KafkaClientError? {
        switch code {
        case .rebalanceInProgress:
            needsRejoin = true
        case .illegalGeneration:
            lose()
        case .unknownMemberID:
            memberID = ""
            lose()
        case .fencedInstanceID:
            lose()
            phase = .left
            return .broker(code, "\(what) \(settings.groupID): another consumer uses group.instance.id \(settings.instanceID ?? "")")
        default:
            break
        }
        return nil
    }

    /// Fenced: the partitions belong to someone else now; report them lost and join again.
    private mutating func lose() {
        generation = -1
        needsRejoin = true
        lostPending = !assignment.isEmpty
        if phase == .stable { phase = .unjoined }
    }

    // MARK: - Leaving

    /// Gives up the partitions (committing first) and leaves the group.
    mutating func leave() -> [Action] {
        defer { phase = .left; assignment = []; nextHeartbeatAtMs = .max }
        guard phase != .left else { return [] }
        var out: [Action] = []
        if !assignment.isEmpty {
            if settings.commitOnRevoke && !lostPending { out.append(.commitBeforeRevoke(assignment)) }
            out.append(.revoke(assignment, lost: lostPending))
        }
        if !memberID.isEmpty {
            var leave = LeaveGroupRequest()
            leave.groupID = settings.groupID
            leave.memberID = memberID
            leave.members = [.init(memberID: memberID, groupInstanceID: settings.instanceID)]
            out.append(.sendLeave(leave))
        }
        return out
    }
}
