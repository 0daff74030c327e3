import KafkaProtocol

// Heartbeat (key 12), versions 0–4. Keeps a member's session alive. REBALANCE_IN_PROGRESS tells
// the member to rejoin; UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION that it was removed or is behind;
// FENCED_INSTANCE_ID that another process took its static identity.

extension BrokerAPI {
    static let heartbeat = BrokerAPI(HeartbeatRequest.self, versions: 0...4) { $0.handleHeartbeat($1, $2) }
}

extension Broker {
    func handleHeartbeat(_ req: HeartbeatRequest, _ ctx: RequestContext) -> Reply {
        var resp = HeartbeatResponse()
        if let (code, _) = GroupFieldLimits.violation(group: req.groupID, memberID: req.memberID, instanceID: req.groupInstanceID) {
            resp.errorCode = code
            return .response(resp)
        }
        resp.errorCode = groups.heartbeat(req.groupID, memberID: req.memberID, groupInstanceID: req.groupInstanceID,
                                          generation: req.generationID)
        return .response(resp)
    }
}
