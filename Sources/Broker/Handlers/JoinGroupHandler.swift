import KafkaProtocol
import NIOCore

// JoinGroup (key 11), versions 0–7.
// - v4+: a member without id gets MEMBER_ID_REQUIRED with a fresh id and rejoins with it.
// - v5+: static membership (group_instance_id); a restarted static member takes over its old
//   identity without a rebalance when its protocols are unchanged.
// - The response is parked until the join phase ends (all members rejoined, the rebalance timeout,
//   or the initial delay of an empty group). Only the leader gets the member list.
// - v0 has no rebalance timeout: the session timeout is used, as Kafka does.
// - v7+ echoes the protocol type.

extension BrokerAPI {
    static let joinGroup = BrokerAPI(JoinGroupRequest.self, versions: 0...7) { $0.handleJoinGroup($1, $2) }
}

extension Broker {
    func handleJoinGroup(_ req: JoinGroupRequest, _ ctx: RequestContext) -> Reply {
        let version = ctx.version
        @Sendable func respond(_ r: GroupStateMachine.JoinResult) -> JoinGroupResponse {
            var resp = JoinGroupResponse()
            resp.errorCode = r.error
            resp.generationID = r.generation
            resp.protocolType = version >= 7 ? r.protocolType : nil
            resp.protocolName = r.protocolName ?? (version >= 7 ? nil : "")
            resp.leader = r.leader
            resp.memberID = r.memberID
            resp.members = r.members.map { .init(memberID: $0.id, groupInstanceID: $0.instanceID, metadata: $0.metadata) }
            return resp
        }
        guard !req.groupID.rawValue.isEmpty else {
            var r = GroupStateMachine.JoinResult()
            r.error = .invalidGroupID
            r.memberID = req.memberID
            return .response(respond(r))
        }
        if let (code, why) = GroupFieldLimits.violation(group: req.groupID, memberID: req.memberID, instanceID: req.groupInstanceID,
                                                       protocolType: req.protocolType, protocolNames: req.protocols.map(\.name),
                                                       clientID: ctx.header.clientID) {
            logger.info("join refused", metadata: ["group_bytes": "\(req.groupID.rawValue.utf8.count)", "reason": "\(why)",
                                                   "client": "\(ctx.remoteAddress)"])
            var r = GroupStateMachine.JoinResult()
            r.error = code
            r.memberID = code == .unknownMemberID ? "" : req.memberID
            return .response(respond(r))
        }
        let info = GroupStateMachine.JoinRequest(
            memberID: req.memberID, groupInstanceID: req.groupInstanceID, clientID: ctx.header.clientID ?? "",
            clientHost: Self.host(of: ctx.remoteAddress), sessionTimeoutMs: req.sessionTimeoutMs,
            rebalanceTimeoutMs: version >= 1 ? req.rebalanceTimeoutMs : req.sessionTimeoutMs,
            protocolType: req.protocolType,
            protocols: req.protocols.map { .init(name: $0.name, metadata: $0.metadata) },
            requireKnownMemberID: version >= 4)
        let future = groups.join(req.groupID, info, on: ctx.eventLoop)
        return .deferred(future.map { respond($0) as any KafkaResponseMessage })
    }

    /// `/127.0.0.1` style client host from a NIO address description.
    static func host(of remote: String) -> String {
        // "[IPv4]127.0.0.1/127.0.0.1:41732"
        if let slash = remote.lastIndex(of: "/"), let colon = remote.lastIndex(of: ":"), slash < colon {
            return "/" + remote[remote.index(after: slash)..<colon]
        }
        return remote
    }
}
