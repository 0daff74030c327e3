import KafkaProtocol

// DescribeCluster (key 60), versions 0–1: cluster id, controller (this broker) and the brokers
// reachable on the listener the client used. endpoint_type 2 (controllers) is not served.

extension BrokerAPI {
    static let describeCluster = BrokerAPI(DescribeClusterRequest.self, versions: 0...1) { $0.handleDescribeCluster($1, $2) }
}

extension Broker {
    func handleDescribeCluster(_ req: DescribeClusterRequest, _ ctx: RequestContext) -> Reply {
        var resp = DescribeClusterResponse()
        resp.endpointType = req.endpointType
        if req.endpointType != 1 {
            resp.errorCode = .unsupportedEndpointType
            resp.errorMessage = "only broker endpoints (type 1) are served"
            return .response(resp)
        }
        resp.clusterID = clusterID
        resp.controllerID = brokerID
        let me = advertisedListeners[ctx.listenerIndex]
        resp.brokers = [.init(brokerID: brokerID, host: me.host, port: Int32(me.port), rack: config.rack)]
        return .response(resp)
    }
}
