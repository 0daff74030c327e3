import KafkaProtocol
import NIOCore

// DescribeGroups (key 15), versions 0–5: state, protocol type and chosen protocol, and every
// member with client id, host, subscription metadata and assignment. An unknown group is
// described as Dead with no members (what Kafka answers).

extension BrokerAPI {
    static let describeGroups = BrokerAPI(DescribeGroupsRequest.self, versions: 0...5) { $0.handleDescribeGroups($1, $2) }
}

extension Broker {
    func handleDescribeGroups(_ req: DescribeGroupsRequest, _ ctx: RequestContext) -> Reply {
        var resp = DescribeGroupsResponse()
        for g in req.groups {
            var d = DescribeGroupsResponse.DescribedGroup(groupID: g)
            if g.rawValue.isEmpty {
                d.errorCode = .invalidGroupID
            } else if let s = groups.describe(g) {
                d.groupState = s.phase.rawValue
                d.protocolType = s.protocolType
                d.protocolData = s.protocolName
                d.members = s.members.map { m in
                    .init(memberID: m.memberID, groupInstanceID: m.groupInstanceID, clientID: m.clientID, clientHost: m.clientHost,
                          memberMetadata: m.metadata(for: s.protocolName), memberAssignment: m.assignment)
                }
            } else {
                d.groupState = "Dead"
            }
            resp.groups.append(d)
        }
        return .response(resp)
    }
}
