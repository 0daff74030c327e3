import KafkaProtocol

// ListGroups (key 16), versions 0–4: every group this coordinator knows with its protocol type;
// v4 adds the state and filters by `states_filter` (case-insensitive, as Kafka does).

extension BrokerAPI {
    static let listGroups = BrokerAPI(ListGroupsRequest.self, versions: 0...4) { $0.handleListGroups($1, $2) }
}

extension Broker {
    func handleListGroups(_ req: ListGroupsRequest, _ ctx: RequestContext) -> Reply {
        var resp = ListGroupsResponse()
        let filter = Set(req.statesFilter.map { $0.lowercased() })
        for g in groups.listGroups() where g.phase != .dead {
            if !filter.isEmpty && !filter.contains(g.phase.rawValue.lowercased()) { continue }
            resp.groups.append(.init(groupID: g.groupID, protocolType: g.protocolType, groupState: g.phase.rawValue))
        }
        return .response(resp)
    }
}
