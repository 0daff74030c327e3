import KafkaProtocol
import LogStorage

// DescribeConfigs (key 32), versions 0–4.
// - Topic resources (type 2): every topic config with its value and source (topic override,
//   broker default, Kafka default); v0 reports is_default instead of a source. Synonyms (v1+) when
//   asked list the override and the default; config_type and documentation from v3.
// - Broker resources (type 4, name = broker id): the broker's static settings, read-only.
// - Unknown topics: UNKNOWN_TOPIC_OR_PARTITION; other resource types: INVALID_REQUEST.

extension BrokerAPI {
    static let describeConfigs = BrokerAPI(DescribeConfigsRequest.self, versions: 0...4) { $0.handleDescribeConfigs($1, $2) }
}

extension Broker {
    func handleDescribeConfigs(_ req: DescribeConfigsRequest, _ ctx: RequestContext) -> Reply {
        var resp = DescribeConfigsResponse()
        for res in req.resources {
            var r = DescribeConfigsResponse.DescribeConfigsResult(resourceType: res.resourceType, resourceName: res.resourceName)
            r.errorMessage = nil
            let wanted = res.configurationKeys.flatMap { $0.isEmpty ? nil : Set($0) }
            switch res.resourceType {
            case 2:
                guard let cfg = logs.config(TopicName(res.resourceName)) else {
                    r.errorCode = .unknownTopicOrPartition
                    r.errorMessage = "topic '\(res.resourceName)' does not exist"
                    break
                }
                for d in LogConfig.definitions where wanted?.contains(d.name) ?? true {
                    let (value, source) = cfg.value(d.name)!
                    var e = DescribeConfigsResponse.DescribeConfigsResourceResult(name: d.name, value: value)
                    e.isDefault = source == .default
                    e.configSource = Self.configSource(source)
                    e.configType = d.wireType
                    if req.includeDocumentation { e.documentation = d.documentation } else { e.documentation = nil }
                    if req.includeSynonyms {
                        if let o = cfg.overrides[d.name] { e.synonyms.append(.init(name: d.name, value: o, source: 1)) }
                        if let b = cfg.brokerDefaults[d.name] { e.synonyms.append(.init(name: d.name, value: b, source: 4)) }
                        e.synonyms.append(.init(name: d.name, value: d.defaultValue, source: 5))
                    }
                    r.configs.append(e)
                }
            case 4:
                guard res.resourceName.isEmpty || Int32(res.resourceName) == config.brokerID else {
                    r.errorCode = .invalidRequest
                    r.errorMessage = "this is broker \(config.brokerID), not '\(res.resourceName)'"
                    break
                }
                let settings: [(String, String, Int8)] = [
                    ("broker.id", "\(config.brokerID)", 3),
                    ("node.id", "\(config.brokerID)", 3),
                    ("log.dirs", config.dataDirectory, 2),
                    ("listeners", config.listeners.map(\.description).joined(separator: ","), 7),
                    ("advertised.listeners", advertisedListeners.map(\.description).joined(separator: ","), 7),
                    ("auto.create.topics.enable", "\(config.autoCreateTopics)", 1),
                    ("num.partitions", "\(config.defaultPartitions)", 3),
                    ("default.replication.factor", "1", 4),
                    ("socket.request.max.bytes", "\(config.maxRequestBytes)", 3),
                    ("log.retention.check.interval.ms", "\(config.retentionCheckIntervalMs)", 5),
                ]
                for (name, value, type) in settings where wanted?.contains(name) ?? true {
                    var e = DescribeConfigsResponse.DescribeConfigsResourceResult(name: name, value: value, readOnly: true)
                    e.configSource = 4
                    e.configType = type
                    e.documentation = nil
                    r.configs.append(e)
                }
            default:
                r.errorCode = .invalidRequest
                r.errorMessage = "resource type \(res.resourceType) is not supported; use 2 (topic) or 4 (broker)"
            }
            resp.results.append(r)
        }
        return .response(resp)
    }
}
