import KafkaProtocol

// LeaveGroup (key 13), versions 0–4. v0–2 name one member; v3+ a batch (by member id or static
// instance id) with an error per member. A leaving member triggers a rebalance of the rest.

extension BrokerAPI {
    static let leaveGroup = BrokerAPI(LeaveGroupRequest.self, versions: 0...4) { $0.handleLeaveGroup($1, $2) }
}

extension Broker {
    func handleLeaveGroup(_ req: LeaveGroupRequest, _ ctx: RequestContext) -> Reply {
        var resp = LeaveGroupResponse()
        if let (code, _) = GroupFieldLimits.violation(group: req.groupID, memberID: req.memberID) {
            resp.errorCode = code
            return .response(resp)
        }
        if ctx.version < 3 {
            let (_, errors) = groups.leave(req.groupID, [(req.memberID, nil)])
            resp.errorCode = errors.first ?? .none
        } else {
            let members = req.members.map { (memberID: $0.memberID, instanceID: $0.groupInstanceID) }
            // A member whose ids cannot be stored cannot be in the group either.
            let (top, known) = groups.leave(req.groupID, members.filter {
                GroupFieldLimits.violation(group: req.groupID, memberID: $0.memberID, instanceID: $0.instanceID) == nil
            })
            var remaining = known.makeIterator()
            let errors: [ErrorCode] = members.map {
                GroupFieldLimits.violation(group: req.groupID, memberID: $0.memberID, instanceID: $0.instanceID)?.code
                    ?? remaining.next() ?? .unknownMemberID
            }
            resp.errorCode = top
            resp.members = zip(req.members, errors).map {
                .init(memberID: $0.0.memberID, groupInstanceID: $0.0.groupInstanceID, errorCode: $0.1)
            }
        }
        return .response(resp)
    }
}
