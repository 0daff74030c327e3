import KafkaProtocol
import LogStorage

// IncrementalAlterConfigs (key 44), versions 0–1.
// - Operations: 0 SET, 1 DELETE (back to default), 2 APPEND and 3 SUBTRACT (list configs only,
//   i.e. cleanup.policy). Each resource is applied atomically after validating every change.
// - Only topic resources (type 2); validate_only checks without applying.

extension BrokerAPI {
    static let incrementalAlterConfigs = BrokerAPI(IncrementalAlterConfigsRequest.self, versions: 0...1) { $0.handleIncrementalAlterConfigs($1, $2) }
}

extension Broker {
    func handleIncrementalAlterConfigs(_ req: IncrementalAlterConfigsRequest, _ ctx: RequestContext) -> Reply {
        .deferred(offload("IncrementalAlterConfigs", on: ctx.eventLoop) { [self] in serveIncrementalAlterConfigs(req) })
    }

    private func serveIncrementalAlterConfigs(_ req: IncrementalAlterConfigsRequest) -> any KafkaResponseMessage {
        var resp = IncrementalAlterConfigsResponse()
        for res in req.resources {
            var r = IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(resourceType: res.resourceType, resourceName: res.resourceName)
            r.errorMessage = nil
            do {
                guard res.resourceType == 2 else {
                    throw BrokerError(.invalidRequest, "only topic configs (resource type 2) can be altered; broker settings are command-line flags")
                }
                let name = TopicName(res.resourceName)
                guard let current = logs.config(name) else { throw BrokerError.unknownTopic(name) }
                try logs.refuseClientChange(to: name, "change its configs")
                var configs = current.overrides
                for c in res.configs {
                    guard let def = LogConfig.definition(c.name) else {
                        throw BrokerError(.invalidConfig, "unknown topic config '\(c.name)'")
                    }
                    switch c.configOperation {
                    case 0:
                        guard let v = c.value else { throw BrokerError(.invalidConfig, "SET of \(c.name) needs a value") }
                        configs[c.name] = v
                    case 1:
                        configs[c.name] = nil
                    case 2, 3:
                        guard case .list = def.type, let v = c.value else {
                            throw BrokerError(.invalidConfig, "APPEND/SUBTRACT only apply to list configs such as cleanup.policy")
                        }
                        var items = (configs[c.name] ?? current.value(c.name)!.value).split(separator: ",").map(String.init)
                        let change = v.split(separator: ",").map(String.init)
                        if c.configOperation == 2 {
                            for i in change where !items.contains(i) { items.append(i) }
                        } else {
                            items.removeAll { change.contains($0) }
                        }
                        configs[c.name] = items.joined(separator: ",")
                    default:
                        throw BrokerError(.invalidRequest, "unknown config operation \(c.configOperation)")
                    }
                }
                try logs.setConfigs(name, configs, validateOnly: req.validateOnly)
            } catch {
                r.errorCode = BrokerError.code(for: error)
                r.errorMessage = BrokerError.message(for: error)
            }
            resp.responses.append(r)
        }
        return resp
    }
}
