import KafkaProtocol

// DeleteGroups (key 42), versions 0–2: deletes groups without members, with their offsets
// (tombstones in __consumer_offsets). NON_EMPTY_GROUP while members remain; GROUP_ID_NOT_FOUND
// for unknown groups.

extension BrokerAPI {
    static let deleteGroups = BrokerAPI(DeleteGroupsRequest.self, versions: 0...2) { $0.handleDeleteGroups($1, $2) }
}

extension Broker {
    func handleDeleteGroups(_ req: DeleteGroupsRequest, _ ctx: RequestContext) -> Reply {
        var resp = DeleteGroupsResponse()
        resp.results = req.groupsNames.map { .init(groupID: $0, errorCode: groups.deleteGroup($0)) }
        return .response(resp)
    }
}
