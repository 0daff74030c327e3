import KafkaProtocol
import LogStorage

// CreateTopics (key 19), versions 2–7.
// - num_partitions -1 means the broker default; replication_factor -1 means 1. Only 1 is possible
//   on a single-node region (INVALID_REPLICATION_FACTOR otherwise). Manual assignments must name
//   this broker only.
// - Configs are validated against the topic config table (INVALID_CONFIG with a message).
// - validate_only checks without creating. v5+ answers with partitions, replication factor and the
//   effective configs; v7+ with the topic id.

extension BrokerAPI {
    static let createTopics = BrokerAPI(CreateTopicsRequest.self, versions: 2...7) { $0.handleCreateTopics($1, $2) }
}

extension Broker {
    func handleCreateTopics(_ req: CreateTopicsRequest, _ ctx: RequestContext) -> Reply {
        .deferred(offload("create topics", on: ctx.eventLoop) { [self] in createTopics(req) })
    }

    private func createTopics(_ req: CreateTopicsRequest) -> any KafkaResponseMessage {
        var resp = CreateTopicsResponse()
        var counts: [TopicName: Int] = [:]
        for t in req.topics { counts[t.name, default: 0] += 1 }
        for t in req.topics {
            var r = CreateTopicsResponse.CreatableTopicResult(name: t.name)
            r.errorMessage = nil
            do {
                if counts[t.name, default: 0] > 1 { throw BrokerError(.invalidRequest, "Duplicate topic name.") }
                var partitions = t.numPartitions == -1 ? config.defaultPartitions : t.numPartitions
                let rf = t.replicationFactor == -1 ? Int16(1) : t.replicationFactor
                if !t.assignments.isEmpty {
                    guard t.numPartitions == -1 && t.replicationFactor == -1 else {
                        throw BrokerError(.invalidRequest, "give either assignments or partitions/replication factor, not both")
                    }
                    guard t.assignments.allSatisfy({ $0.brokerIDs == [brokerID] }) else {
                        throw BrokerError(.invalidReplicaAssignment, "assignments may only name broker \(brokerID)")
                    }
                    partitions = Int32(t.assignments.count)
                }
                var configs: [String: String] = [:]
                for c in t.configs {
                    guard let v = c.value else { continue }
                    configs[c.name] = v
                }
                let record = try logs.createTopic(t.name, partitions: partitions, replicationFactor: rf, configs: configs,
                                                  validateOnly: req.validateOnly)
                r.numPartitions = record.partitions
                r.replicationFactor = record.replicationFactor
                r.topicID = req.validateOnly ? .zero : (logs.topic(t.name)?.topicID ?? .zero)
                let effective = LogConfig(overrides: configs, brokerDefaults: config.topicConfigDefaults)
                r.configs = LogConfig.definitions.map { d in
                    let (value, source) = effective.value(d.name)!
                    return .init(name: d.name, value: value, readOnly: false,
                                 configSource: Self.configSource(source), isSensitive: false)
                }
            } catch {
                r.errorCode = BrokerError.code(for: error)
                r.errorMessage = BrokerError.message(for: error)
                r.configs = []
            }
            resp.topics.append(r)
        }
        return resp
    }

    /// DescribeConfigs `config_source`: 1 topic override, 4 static broker setting, 5 Kafka default.
    static func configSource(_ s: LogConfig.Source) -> Int8 {
        switch s {
        case .topic: return 1
        case .broker: return 4
        case .default: return 5
        }
    }
}
