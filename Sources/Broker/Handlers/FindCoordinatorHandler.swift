import KafkaProtocol

// FindCoordinator (key 10), versions 0–4 (v0 must be advertised: librdkafka 2.0.2 gates group
// support on it). Group keys (key_type 0) are coordinated by this broker; transaction keys
// (key_type 1) get COORDINATOR_NOT_AVAILABLE because transactions are not supported. v4 answers a
// batch of keys in `coordinators`; earlier versions one key in the top-level fields.

extension BrokerAPI {
    static let findCoordinator = BrokerAPI(FindCoordinatorRequest.self, versions: 0...4) { $0.handleFindCoordinator($1, $2) }
}

extension Broker {
    func handleFindCoordinator(_ req: FindCoordinatorRequest, _ ctx: RequestContext) -> Reply {
        let me = advertisedListeners[ctx.listenerIndex]
        func answer(_ key: String) -> FindCoordinatorResponse.Coordinator {
            var c = FindCoordinatorResponse.Coordinator(key: key, nodeID: -1, host: "", port: -1)
            c.errorMessage = nil
            if req.keyType == 1 {
                c.errorCode = .coordinatorNotAvailable
                c.errorMessage = "transactions are not supported"
            } else if req.keyType != 0 {
                c.errorCode = .invalidRequest
                c.errorMessage = "unknown key type \(req.keyType)"
            } else if key.isEmpty {
                c.errorCode = .invalidGroupID
                c.errorMessage = "the group id is empty"
            } else {
                c.nodeID = brokerID
                c.host = me.host
                c.port = Int32(me.port)
            }
            return c
        }
        var resp = FindCoordinatorResponse()
        if ctx.version >= 4 {
            resp.coordinators = req.coordinatorKeys.map(answer)
        } else {
            let c = answer(req.key)
            resp.errorCode = c.errorCode
            resp.errorMessage = c.errorMessage
            resp.nodeID = c.nodeID
            resp.host = c.host
            resp.port = c.port
        }
        return .response(resp)
    }
}
