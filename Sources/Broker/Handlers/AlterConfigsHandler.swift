import KafkaProtocol
import LogStorage

// AlterConfigs (key 33), versions 0–2: the legacy call that replaces all of a topic's overrides with
// the given set (unlisted keys return to their defaults). Only topic resources (type 2) can change;
// broker settings are static. validate_only checks without applying.

extension BrokerAPI {
    static let alterConfigs = BrokerAPI(AlterConfigsRequest.self, versions: 0...2) { $0.handleAlterConfigs($1, $2) }
}

extension Broker {
    func handleAlterConfigs(_ req: AlterConfigsRequest, _ ctx: RequestContext) -> Reply {
        .deferred(offload("AlterConfigs", on: ctx.eventLoop) { [self] in serveAlterConfigs(req) })
    }

    private func serveAlterConfigs(_ req: AlterConfigsRequest) -> any KafkaResponseMessage {
        var resp = AlterConfigsResponse()
        for res in req.resources {
            var r = AlterConfigsResponse.AlterConfigsResourceResponse(resourceType: res.resourceType, resourceName: res.resourceName)
            r.errorMessage = nil
            do {
                guard res.resourceType == 2 else {
                    throw BrokerError(.invalidRequest, "only topic configs (resource type 2) can be altered; broker settings are command-line flags")
                }
                var configs: [String: String] = [:]
                for c in res.configs { if let v = c.value { configs[c.name] = v } }
                try logs.setConfigs(TopicName(res.resourceName), configs, validateOnly: req.validateOnly)
            } catch {
                r.errorCode = BrokerError.code(for: error)
                r.errorMessage = BrokerError.message(for: error)
            }
            resp.responses.append(r)
        }
        return resp
    }
}
