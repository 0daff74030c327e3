import KafkaProtocol
import NIOCore

// SyncGroup (key 14), versions 0–5. The leader sends every member's assignment; the others send
// none and wait. Everyone is answered with their own assignment once the leader's arrives (and the
// group snapshot is written). v5 checks and echoes protocol type and name.

extension BrokerAPI {
    static let syncGroup = BrokerAPI(SyncGroupRequest.self, versions: 0...5) { $0.handleSyncGroup($1, $2) }
}

extension Broker {
    func handleSyncGroup(_ req: SyncGroupRequest, _ ctx: RequestContext) -> Reply {
        let version = ctx.version
        if let (code, _) = GroupFieldLimits.violation(group: req.groupID, memberID: req.memberID, instanceID: req.groupInstanceID,
                                                     protocolType: req.protocolType, protocolNames: [req.protocolName ?? ""]) {
            var resp = SyncGroupResponse()
            resp.errorCode = code
            return .response(resp)
        }
        var assignments: [String: ByteBuffer]? = nil
        if !req.assignments.isEmpty {
            assignments = Dictionary(req.assignments.map { ($0.memberID, $0.assignment) }, uniquingKeysWith: { a, _ in a })
        }
        let future = groups.sync(req.groupID, memberID: req.memberID, groupInstanceID: req.groupInstanceID,
                                 generation: req.generationID, protocolType: version >= 5 ? req.protocolType : nil,
                                 protocolName: version >= 5 ? req.protocolName : nil,
                                 assignments: assignments ?? (req.assignments.isEmpty ? nil : [:]), on: ctx.eventLoop)
        return .deferred(future.map { r in
            var resp = SyncGroupResponse()
            resp.errorCode = r.error
            if version >= 5 {
                resp.protocolType = r.protocolType
                resp.protocolName = r.protocolName
            }
            resp.assignment = r.assignment
            return resp as any KafkaResponseMessage
        })
    }
}
