import KafkaProtocol
import NIOCore
import OrderedCollections

/// The classic consumer-group protocol for one group, as a value type without I/O.
///
/// Every input (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, an offset-commit check, or the passage
/// of time through ``tick(now:)``) is a mutating call that takes the current time and returns what
/// to answer now plus ``GroupOutput``s: responses owed to requests that were parked earlier and
/// "persist" requests. The coordinator owns the instance, serialises calls to it under its lock,
/// and arranges for ``tick(now:)`` to run at ``nextDeadline``. Tests drive it with a fake clock.
///
/// Phases follow Kafka: Empty → PreparingRebalance (collecting joins) → CompletingRebalance
/// (waiting for the leader's assignments) → Stable, and Dead once deleted.
public struct GroupStateMachine: Sendable {
    public enum Phase: String, Sendable {
        case empty = "Empty"
        case preparingRebalance = "PreparingRebalance"
        case completingRebalance = "CompletingRebalance"
        case stable = "Stable"
        case dead = "Dead"
    }

    public struct Settings: Sendable {
        /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits for more members.
        public var initialRebalanceDelayMs: Int64 = 3000
        public var minSessionTimeoutMs: Int32 = 6000
        public var maxSessionTimeoutMs: Int32 = 1_800_000
        /// `group.max.size` (members, pending ones included; unbounded by default, as in Kafka).
        public var maxGroupSize = Int.max
        /// Members that got MEMBER_ID_REQUIRED and have not rejoined yet, per group: each is kept
        /// for a session timeout, so without a bound a client looping on JoinGroup grows memory.
        public var maxPendingMembers = 1000
        public init() {}
    }

    public struct ProtocolMetadata: Sendable, Equatable {
        public var name: String
        public var metadata: ByteBuffer
        public init(name: String, metadata: ByteBuffer) {
            self.name = name
            self.metadata = metadata
        }
    }

    public struct Member: Sendable, Equatable {
        public var memberID: String
        public var groupInstanceID: String?
        public var clientID: String
        public var clientHost: String
        public var rebalanceTimeoutMs: Int32
        public var sessionTimeoutMs: Int32
        public var protocols: [ProtocolMetadata]
        public var assignment = ByteBuffer()
        /// A JoinGroup from this member is parked until the join phase ends.
        public var awaitingJoin = false
        /// A SyncGroup from this member is parked until the leader's assignments arrive.
        public var awaitingSync = false
        public var heartbeatDeadline: Int64

        /// The metadata this member sent for `protocol`.
        public func metadata(for protocolName: String?) -> ByteBuffer {
            protocols.first { $0.name == protocolName }?.metadata ?? ByteBuffer()
        }
    }

    public struct JoinRequest: Sendable {
        public var memberID: String
        public var groupInstanceID: String?
        public var clientID: String
        public var clientHost: String
        public var sessionTimeoutMs: Int32
        public var rebalanceTimeoutMs: Int32
        public var protocolType: String
        public var protocols: [ProtocolMetadata]
        /// JoinGroup v4+: a member without id first gets MEMBER_ID_REQUIRED and an id to rejoin with.
        public var requireKnownMemberID: Bool

        public init(memberID: String, groupInstanceID: String?, clientID: String, clientHost: String, sessionTimeoutMs: Int32,
                    rebalanceTimeoutMs: Int32, protocolType: String, protocols: [ProtocolMetadata], requireKnownMemberID: Bool) {
            self.memberID = memberID
            self.groupInstanceID = groupInstanceID
            self.clientID = clientID
            self.clientHost = clientHost
            self.sessionTimeoutMs = sessionTimeoutMs
            self.rebalanceTimeoutMs = rebalanceTimeoutMs
            self.protocolType = protocolType
            self.protocols = protocols
            self.requireKnownMemberID = requireKnownMemberID
        }
    }

    public struct JoinResult: Sendable, Equatable {
        public var error: ErrorCode = .none
        public var generation: Int32 = -1
        public var protocolType: String?
        public var protocolName: String?
        public var leader: String = ""
        public var memberID: String = ""
        /// Filled for the leader only: every member with its metadata for the chosen protocol.
        public var members: [(id: String, instanceID: String?, metadata: ByteBuffer)] = []

        public static func == (a: JoinResult, b: JoinResult) -> Bool {
            a.error == b.error && a.generation == b.generation && a.protocolType == b.protocolType
                && a.protocolName == b.protocolName && a.leader == b.leader && a.memberID == b.memberID
                && a.members.map(\.id) == b.members.map(\.id)
        }
    }

    public struct SyncResult: Sendable, Equatable {
        public var error: ErrorCode = .none
        public var protocolType: String?
        public var protocolName: String?
        public var assignment = ByteBuffer()
    }

    /// Work the coordinator must do after a call.
    public enum GroupOutput: Sendable, Equatable {
        /// Answer the parked JoinGroup of `memberID`.
        case join(memberID: String, JoinResult)
        /// Answer the parked SyncGroup of `memberID`.
        case sync(memberID: String, SyncResult)
        /// The group's membership or assignment changed: write a snapshot to `__consumer_offsets`.
        case persist
    }

    public enum JoinOutcome: Sendable, Equatable {
        case now(JoinResult)
        /// Parked; a later ``GroupOutput/join(memberID:_:)`` answers it.
        case parked(memberID: String)
    }

    public enum SyncOutcome: Sendable, Equatable {
        case now(SyncResult)
        case parked
    }

    public let groupID: GroupID
    public var settings: Settings
    public private(set) var phase: Phase = .empty
    public private(set) var generation: Int32 = 0
    public private(set) var protocolType: String?
    public private(set) var protocolName: String?
    public private(set) var leaderID: String?
    public private(set) var members = OrderedDictionary<String, Member>()
    /// Ids handed out with MEMBER_ID_REQUIRED and the time by which they must rejoin.
    public private(set) var pendingMembers: [String: Int64] = [:]
    /// Static membership: group.instance.id → member id.
    public private(set) var staticMembers: [String: String] = [:]
    /// End of the current join phase.
    public private(set) var joinDeadline: Int64?
    /// Latest end of the join phase while the initial delay keeps extending it.
    private var initialDelayLimit: Int64?
    /// When the group last became Empty (offset retention counts from here).
    public private(set) var emptySince: Int64?
    /// Time of the last phase change, persisted like Kafka's current_state_timestamp.
    public private(set) var stateTimestamp: Int64

    public init(groupID: GroupID, settings: Settings, now: Int64) {
        self.groupID = groupID
        self.settings = settings
        self.emptySince = now
        self.stateTimestamp = now
    }

    public var isEmpty: Bool { members.isEmpty && pendingMembers.isEmpty }

    /// Earliest time at which ``tick(now:)`` has something to do.
    public var nextDeadline: Int64? {
        var d = joinDeadline
        for m in members.values where !m.awaitingJoin && !m.awaitingSync {
            d = min(d ?? m.heartbeatDeadline, m.heartbeatDeadline)
        }
        for (_, deadline) in pendingMembers { d = min(d ?? deadline, deadline) }
        return d
    }

    private mutating func transition(_ p: Phase, now: Int64) {
        phase = p
        stateTimestamp = now
        if p == .empty { emptySince = now } else if p != .dead { emptySince = nil }
    }

    private func newMemberID(clientID: String) -> String {
        let uuid = KafkaUUID.random().description
        return "\(clientID.isEmpty ? "member" : clientID)-\(uuid)"
    }

    private func baseResult(for memberID: String) -> JoinResult {
        var r = JoinResult()
        r.generation = generation
        r.protocolType = protocolType
        r.protocolName = protocolName
        r.leader = leaderID ?? ""
        r.memberID = memberID
        if memberID == leaderID {
            r.members = members.values.map { ($0.memberID, $0.groupInstanceID, $0.metadata(for: protocolName)) }
        }
        return r
    }

    private static func error(_ code: ErrorCode, memberID: String = "") -> JoinResult {
        var r = JoinResult()
        r.error = code
        r.memberID = memberID
        return r
    }

    // MARK: - JoinGroup

    public mutating func join(_ req: JoinRequest, now: Int64) -> (JoinOutcome, [GroupOutput]) {
        var out: [GroupOutput] = []
        if phase == .dead { return (.now(Self.error(.coordinatorNotAvailable, memberID: req.memberID)), out) }
        guard req.sessionTimeoutMs >= settings.minSessionTimeoutMs, req.sessionTimeoutMs <= settings.maxSessionTimeoutMs else {
            return (.now(Self.error(.invalidSessionTimeout, memberID: req.memberID)), out)
        }
        guard !req.protocolType.isEmpty, !req.protocols.isEmpty, supportsProtocols(req) else {
            return (.now(Self.error(.inconsistentGroupProtocol, memberID: req.memberID)), out)
        }

        if req.memberID.isEmpty {
            if let instance = req.groupInstanceID, let existing = staticMembers[instance], members[existing] != nil {
                return joinReplacingStaticMember(req, oldID: existing, now: now)
            }
            guard members.count + pendingMembers.count < settings.maxGroupSize,
                  pendingMembers.count < settings.maxPendingMembers else {
                return (.now(Self.error(.groupMaxSizeReached)), out)
            }
            let id = newMemberID(clientID: req.clientID)
            if req.requireKnownMemberID && req.groupInstanceID == nil {
                pendingMembers[id] = now + Int64(req.sessionTimeoutMs)
                return (.now(Self.error(.memberIDRequired, memberID: id)), out)
            }
            addMember(req, id: id, now: now, out: &out)
            return (.parked(memberID: id), out)
        }

        if pendingMembers.removeValue(forKey: req.memberID) != nil {
            addMember(req, id: req.memberID, now: now, out: &out)
            return (.parked(memberID: req.memberID), out)
        }
        guard var member = members[req.memberID] else {
            return (.now(Self.error(.unknownMemberID, memberID: req.memberID)), out)
        }
        if let instance = req.groupInstanceID, staticMembers[instance] != req.memberID {
            return (.now(Self.error(.fencedInstanceID, memberID: req.memberID)), out)
        }
        let sameProtocols = member.protocols == req.protocols
        member.protocols = req.protocols
        member.sessionTimeoutMs = req.sessionTimeoutMs
        member.rebalanceTimeoutMs = req.rebalanceTimeoutMs
        member.clientID = req.clientID
        member.clientHost = req.clientHost
        member.heartbeatDeadline = now + Int64(req.sessionTimeoutMs)
        switch phase {
        case .preparingRebalance:
            member.awaitingJoin = true
            members[req.memberID] = member
            tryCompleteJoin(now: now, out: &out)
            return (.parked(memberID: req.memberID), out)
        case .completingRebalance where sameProtocols:
            // The member lost our join response; give it again.
            members[req.memberID] = member
            return (.now(baseResult(for: req.memberID)), out)
        case .stable where sameProtocols && req.memberID != leaderID:
            members[req.memberID] = member
            var r = baseResult(for: req.memberID)
            r.members = []
            return (.now(r), out)
        case .completingRebalance, .stable:
            member.awaitingJoin = true
            members[req.memberID] = member
            prepareRebalance(now: now, out: &out)
            tryCompleteJoin(now: now, out: &out)
            return (.parked(memberID: req.memberID), out)
        case .empty, .dead:
            return (.now(Self.error(.unknownMemberID, memberID: req.memberID)), out)
        }
    }

    private func supportsProtocols(_ req: JoinRequest) -> Bool {
        guard !members.isEmpty else { return true }
        if let t = protocolType, t != req.protocolType { return false }
        let names = Set(req.protocols.map(\.name))
        return members.values.allSatisfy { m in m.protocols.contains { names.contains($0.name) } }
            && !commonProtocols(including: req.protocols).isEmpty
    }

    private func commonProtocols(including extra: [ProtocolMetadata]? = nil) -> [String] {
        var lists = members.values.map { $0.protocols.map(\.name) }
        if let extra { lists.append(extra.map(\.name)) }
        guard var common = lists.first.map(Set.init) else { return [] }
        for l in lists.dropFirst() { common.formIntersection(l) }
        return lists.first!.filter { common.contains($0) }
    }

    private mutating func addMember(_ req: JoinRequest, id: String, now: Int64, out: inout [GroupOutput]) {
        let m = Member(memberID: id, groupInstanceID: req.groupInstanceID, clientID: req.clientID, clientHost: req.clientHost,
                       rebalanceTimeoutMs: req.rebalanceTimeoutMs, sessionTimeoutMs: req.sessionTimeoutMs,
                       protocols: req.protocols, awaitingJoin: true, heartbeatDeadline: now + Int64(req.sessionTimeoutMs))
        members[id] = m
        if let instance = req.groupInstanceID { staticMembers[instance] = id }
        if protocolType == nil { protocolType = req.protocolType }
        switch phase {
        case .empty, .stable, .completingRebalance:
            prepareRebalance(now: now, out: &out)
        case .preparingRebalance:
            if let limit = initialDelayLimit {
                // Each new member during the initial delay buys the others a little more time.
                joinDeadline = min(now + settings.initialRebalanceDelayMs, limit)
            }
        case .dead:
            break
        }
        tryCompleteJoin(now: now, out: &out)
    }

    /// A static member rejoined without its member id (restart): it takes over the old identity
    /// under a new id; the old id is fenced.
    private mutating func joinReplacingStaticMember(_ req: JoinRequest, oldID: String, now: Int64) -> (JoinOutcome, [GroupOutput]) {
        var out: [GroupOutput] = []
        guard var old = members.removeValue(forKey: oldID) else { return (.now(Self.error(.unknownMemberID)), out) }
        if old.awaitingJoin { out.append(.join(memberID: oldID, Self.error(.fencedInstanceID, memberID: oldID))) }
        if old.awaitingSync { out.append(.sync(memberID: oldID, SyncResult(error: .fencedInstanceID))) }
        let newID = newMemberID(clientID: req.clientID)
        let sameProtocols = old.protocols == req.protocols
        old.memberID = newID
        old.protocols = req.protocols
        old.sessionTimeoutMs = req.sessionTimeoutMs
        old.rebalanceTimeoutMs = req.rebalanceTimeoutMs
        old.heartbeatDeadline = now + Int64(req.sessionTimeoutMs)
        old.awaitingJoin = false
        old.awaitingSync = false
        members[newID] = old
        staticMembers[req.groupInstanceID!] = newID
        if leaderID == oldID { leaderID = newID }
        if phase == .stable && sameProtocols {
            out.append(.persist)
            var r = baseResult(for: newID)
            r.members = []
            return (.now(r), out)
        }
        members[newID]!.awaitingJoin = true
        if phase != .preparingRebalance { prepareRebalance(now: now, out: &out) }
        tryCompleteJoin(now: now, out: &out)
        return (.parked(memberID: newID), out)
    }

    private mutating func prepareRebalance(now: Int64, out: inout [GroupOutput]) {
        if phase == .completingRebalance {
            for (id, m) in members where m.awaitingSync {
                members[id]!.awaitingSync = false
                out.append(.sync(memberID: id, SyncResult(error: .rebalanceInProgress)))
            }
        }
        let wasEmpty = phase == .empty
        transition(.preparingRebalance, now: now)
        let rebalanceTimeout = Int64(members.values.map(\.rebalanceTimeoutMs).max() ?? 0)
        if wasEmpty {
            initialDelayLimit = now + max(rebalanceTimeout, settings.initialRebalanceDelayMs)
            joinDeadline = min(now + settings.initialRebalanceDelayMs, initialDelayLimit!)
        } else {
            initialDelayLimit = nil
            joinDeadline = now + rebalanceTimeout
        }
    }

    private mutating func tryCompleteJoin(now: Int64, out: inout [GroupOutput]) {
        guard phase == .preparingRebalance else { return }
        let allJoined = members.values.allSatisfy(\.awaitingJoin) && pendingMembers.isEmpty
        let delayOver = initialDelayLimit == nil || (joinDeadline.map { now >= $0 } ?? true)
        if (allJoined && delayOver) || (joinDeadline.map { now >= $0 } ?? false) {
            completeJoin(now: now, out: &out)
        }
    }

    private mutating func completeJoin(now: Int64, out: inout [GroupOutput]) {
        joinDeadline = nil
        initialDelayLimit = nil
        // Members that did not rejoin in time leave the group.
        for (id, m) in members where !m.awaitingJoin {
            removeMember(id)
        }
        generation += 1
        if members.isEmpty {
            protocolName = nil
            leaderID = nil
            transition(.empty, now: now)
            out.append(.persist)
            return
        }
        protocolName = selectProtocol()
        if leaderID == nil || members[leaderID!] == nil { leaderID = members.keys.first }
        transition(.completingRebalance, now: now)
        for (id, _) in members {
            members[id]!.awaitingJoin = false
            members[id]!.heartbeatDeadline = now + Int64(members[id]!.sessionTimeoutMs)
            out.append(.join(memberID: id, baseResult(for: id)))
        }
    }

    /// The protocol every member supports that most members list first among those.
    private func selectProtocol() -> String? {
        let candidates = commonProtocols()
        var votes: [String: Int] = [:]
        for m in members.values {
            if let pick = m.protocols.first(where: { candidates.contains($0.name) }) { votes[pick.name, default: 0] += 1 }
        }
        return candidates.max { (votes[$0] ?? 0, -candidates.firstIndex(of: $0)!) < (votes[$1] ?? 0, -candidates.firstIndex(of: $1)!) }
    }

    private mutating func removeMember(_ id: String) {
        guard let m = members.removeValue(forKey: id) else { return }
        if let instance = m.groupInstanceID, staticMembers[instance] == id { staticMembers[instance] = nil }
        if leaderID == id { leaderID = nil }
    }

    // MARK: - SyncGroup

    public mutating func sync(memberID: String, groupInstanceID: String?, generation gen: Int32, protocolType pt: String?,
                              protocolName pn: String?, assignments: [String: ByteBuffer]?, now: Int64) -> (SyncOutcome, [GroupOutput]) {
        var out: [GroupOutput] = []
        func fail(_ e: ErrorCode) -> (SyncOutcome, [GroupOutput]) { (.now(SyncResult(error: e)), out) }
        if phase == .dead { return fail(.coordinatorNotAvailable) }
        // As Kafka: a static member replaced by a newer one with the same instance id is fenced,
        // which tells that process to stop rather than rejoin.
        if let instance = groupInstanceID, let known = staticMembers[instance], known != memberID { return fail(.fencedInstanceID) }
        guard members[memberID] != nil else { return fail(.unknownMemberID) }
        if let instance = groupInstanceID, staticMembers[instance] != memberID { return fail(.fencedInstanceID) }
        guard gen == generation else { return fail(.illegalGeneration) }
        if let pt, pt != protocolType { return fail(.inconsistentGroupProtocol) }
        if let pn, pn != protocolName { return fail(.inconsistentGroupProtocol) }
        members[memberID]!.heartbeatDeadline = now + Int64(members[memberID]!.sessionTimeoutMs)
        switch phase {
        case .empty: return fail(.unknownMemberID)
        case .preparingRebalance: return fail(.rebalanceInProgress)
        case .stable:
            return (.now(SyncResult(protocolType: protocolType, protocolName: protocolName, assignment: members[memberID]!.assignment)), out)
        case .completingRebalance:
            members[memberID]!.awaitingSync = true
            if memberID == leaderID, let assignments {
                for id in members.keys { members[id]!.assignment = assignments[id] ?? ByteBuffer() }
                transition(.stable, now: now)
                out.append(.persist)
                for (id, m) in members where m.awaitingSync {
                    members[id]!.awaitingSync = false
                    out.append(.sync(memberID: id, SyncResult(protocolType: protocolType, protocolName: protocolName, assignment: m.assignment)))
                }
            }
            return (.parked, out)
        case .dead:
            return fail(.coordinatorNotAvailable)
        }
    }

    // MARK: - Heartbeat

    public mutating func heartbeat(memberID: String, groupInstanceID: String?, generation gen: Int32, now: Int64) -> ErrorCode {
        switch phase {
        case .dead: return .coordinatorNotAvailable
        case .empty: return .unknownMemberID
        default: break
        }
        if let instance = groupInstanceID, let known = staticMembers[instance], known != memberID { return .fencedInstanceID }
        guard members[memberID] != nil else { return .unknownMemberID }
        if let instance = groupInstanceID, staticMembers[instance] != memberID { return .fencedInstanceID }
        guard gen == generation else { return .illegalGeneration }
        members[memberID]!.heartbeatDeadline = now + Int64(members[memberID]!.sessionTimeoutMs)
        return phase == .preparingRebalance ? .rebalanceInProgress : .none
    }

    // MARK: - LeaveGroup

    /// Removes members; returns one error per (memberID, instanceID) in order.
    public mutating func leave(_ leaving: [(memberID: String, instanceID: String?)], now: Int64) -> ([ErrorCode], [GroupOutput]) {
        var out: [GroupOutput] = []
        var errors: [ErrorCode] = []
        if phase == .dead { return (leaving.map { _ in .coordinatorNotAvailable }, out) }
        var changed = false
        for l in leaving {
            var id = l.memberID
            if id.isEmpty, let instance = l.instanceID, let known = staticMembers[instance] { id = known }
            if let instance = l.instanceID, let known = staticMembers[instance], known != id {
                errors.append(.fencedInstanceID)
                continue
            }
            if pendingMembers.removeValue(forKey: id) != nil {
                errors.append(.none)
                changed = true
                continue
            }
            guard let m = members[id] else {
                errors.append(.unknownMemberID)
                continue
            }
            if m.awaitingJoin { out.append(.join(memberID: id, Self.error(.unknownMemberID, memberID: id))) }
            if m.awaitingSync { out.append(.sync(memberID: id, SyncResult(error: .unknownMemberID))) }
            removeMember(id)
            errors.append(.none)
            changed = true
        }
        if changed { membershipShrank(now: now, out: &out) }
        return (errors, out)
    }

    private mutating func membershipShrank(now: Int64, out: inout [GroupOutput]) {
        switch phase {
        case .stable, .completingRebalance:
            prepareRebalance(now: now, out: &out)
            tryCompleteJoin(now: now, out: &out)
        case .preparingRebalance:
            tryCompleteJoin(now: now, out: &out)
        case .empty, .dead:
            break
        }
    }

    // MARK: - Offset commits

    /// Whether a commit from this member at this generation is accepted; refreshes its session.
    public mutating func validateCommit(memberID: String, groupInstanceID: String?, generation gen: Int32, now: Int64) -> ErrorCode {
        if phase == .dead { return .coordinatorNotAvailable }
        if let instance = groupInstanceID, let known = staticMembers[instance], known != memberID { return .fencedInstanceID }
        if gen < 0 && phase == .empty { return .none }
        guard members[memberID] != nil else { return .unknownMemberID }
        guard gen == generation else { return .illegalGeneration }
        if phase == .completingRebalance { return .rebalanceInProgress }
        members[memberID]!.heartbeatDeadline = now + Int64(members[memberID]!.sessionTimeoutMs)
        return .none
    }

    // MARK: - Time

    /// Applies every deadline that has passed: expired sessions, unclaimed member ids, the end of
    /// the join phase.
    public mutating func tick(now: Int64) -> [GroupOutput] {
        var out: [GroupOutput] = []
        for (id, deadline) in pendingMembers where deadline <= now {
            pendingMembers[id] = nil
        }
        var expired = false
        for (id, m) in members where !m.awaitingJoin && !m.awaitingSync && m.heartbeatDeadline <= now {
            removeMember(id)
            expired = true
        }
        if expired {
            membershipShrank(now: now, out: &out)
        }
        tryCompleteJoin(now: now, out: &out)
        return out
    }

    /// Marks the group deleted: every parked request is answered.
    public mutating func markDead(now: Int64) -> [GroupOutput] {
        var out: [GroupOutput] = []
        for (id, m) in members {
            if m.awaitingJoin { out.append(.join(memberID: id, Self.error(.coordinatorNotAvailable, memberID: id))) }
            if m.awaitingSync { out.append(.sync(memberID: id, SyncResult(error: .coordinatorNotAvailable))) }
        }
        members.removeAll()
        pendingMembers.removeAll()
        staticMembers.removeAll()
        transition(.dead, now: now)
        return out
    }

    // MARK: - Persistence

    /// What is written to `__consumer_offsets` (Kafka's GroupMetadataValue v3 fields).
    public struct Snapshot: Sendable, Equatable {
        public struct SnapshotMember: Sendable, Equatable {
            public var memberID: String
            public var groupInstanceID: String?
            public var clientID: String
            public var clientHost: String
            public var rebalanceTimeoutMs: Int32
            public var sessionTimeoutMs: Int32
            public var subscription: ByteBuffer
            public var assignment: ByteBuffer
        }

        public var protocolType: String
        public var generation: Int32
        public var protocolName: String?
        public var leader: String?
        public var stateTimestamp: Int64
        public var members: [SnapshotMember]
    }

    public var snapshot: Snapshot {
        Snapshot(protocolType: protocolType ?? "", generation: generation, protocolName: protocolName, leader: leaderID,
                 stateTimestamp: stateTimestamp,
                 members: phase == .stable ? members.values.map {
                     .init(memberID: $0.memberID, groupInstanceID: $0.groupInstanceID, clientID: $0.clientID,
                           clientHost: $0.clientHost, rebalanceTimeoutMs: $0.rebalanceTimeoutMs,
                           sessionTimeoutMs: $0.sessionTimeoutMs, subscription: $0.metadata(for: protocolName),
                           assignment: $0.assignment)
                 } : [])
    }

    /// Rebuilds a group from its last snapshot after a restart. Members come back Stable and must
    /// heartbeat within their session timeout, as after a coordinator move in Kafka.
    public init(groupID: GroupID, settings: Settings, snapshot s: Snapshot, now: Int64) {
        self.init(groupID: groupID, settings: settings, now: now)
        generation = s.generation
        protocolType = s.protocolType.isEmpty ? nil : s.protocolType
        stateTimestamp = s.stateTimestamp
        if s.members.isEmpty || s.protocolName == nil {
            phase = .empty
            emptySince = s.stateTimestamp
            return
        }
        protocolName = s.protocolName
        leaderID = s.leader
        for m in s.members {
            members[m.memberID] = Member(
                memberID: m.memberID, groupInstanceID: m.groupInstanceID, clientID: m.clientID, clientHost: m.clientHost,
                rebalanceTimeoutMs: m.rebalanceTimeoutMs, sessionTimeoutMs: m.sessionTimeoutMs,
                protocols: [ProtocolMetadata(name: s.protocolName!, metadata: m.subscription)],
                assignment: m.assignment, heartbeatDeadline: now + Int64(m.sessionTimeoutMs))
            if let instance = m.groupInstanceID { staticMembers[instance] = m.memberID }
        }
        phase = .stable
        emptySince = nil
    }
}
