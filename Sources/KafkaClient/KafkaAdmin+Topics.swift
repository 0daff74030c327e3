import KafkaProtocol
import KafkaWire

extension KafkaAdmin {
    /// The controller (where topic changes go); any broker when the cluster reports none, or one
    /// that is not among its brokers (librdkafka's mock cluster reports controller 0).
    private func controllerConnection() async throws -> KafkaConnection {
        try await cluster.refreshMetadata(topics: [])
        let c = cluster.controller
        let known = cluster.knownBrokers.contains { $0.id == c }
        return known ? try await cluster.connection(to: c) : try await cluster.anyConnection()
    }

    /// Creates a topic. `replicationFactor` -1 and `partitions` -1 take the broker defaults.
    public func createTopic(_ name: TopicName, partitions: Int32, replicationFactor: Int16 = -1,
                            configs: [String: String] = [:]) async throws {
        let conn = try await controllerConnection()
        var req = CreateTopicsRequest()
        req.timeoutMs = 30_000
        req.topics = [.init(name: name, numPartitions: partitions, replicationFactor: replicationFactor,
                            configs: configs.sorted { $0.key < $1.key }.map { .init(name: $0.key, value: $0.value) })]
        let resp = try await conn.send(req, version: try conn.version(for: CreateTopicsRequest.self, max: 7))
        if let r = resp.topics.first, r.errorCode != .none {
            throw KafkaClientError.broker(r.errorCode, "creating topic \(name)\(r.errorMessage.map { ": \($0)" } ?? "")")
        }
        cluster.invalidate(name)
    }

    public func deleteTopic(_ name: TopicName) async throws {
        let conn = try await controllerConnection()
        var req = DeleteTopicsRequest()
        req.timeoutMs = 30_000
        let v = try conn.version(for: DeleteTopicsRequest.self, max: 5)
        if v >= 6 { req.topics = [.init(name: name)] } else { req.topicNames = [name] }
        let resp = try await conn.send(req, version: v)
        if let r = resp.responses.first, r.errorCode != .none {
            if r.errorCode == .unknownTopicOrPartition { throw KafkaClientError.unknownTopic(name) }
            throw KafkaClientError.broker(r.errorCode, "deleting topic \(name)\(r.errorMessage.map { ": \($0)" } ?? "")")
        }
        cluster.invalidate(name)
    }

    /// Raises the partition count of a topic to `count`.
    public func createPartitions(_ name: TopicName, count: Int32) async throws {
        let conn = try await controllerConnection()
        var req = CreatePartitionsRequest()
        req.timeoutMs = 30_000
        req.topics = [.init(name: name, count: count, assignments: nil)]
        let resp = try await conn.send(req, version: try conn.version(for: CreatePartitionsRequest.self, max: 3))
        if let r = resp.results.first, r.errorCode != .none {
            throw KafkaClientError.broker(r.errorCode, "adding partitions to \(name)\(r.errorMessage.map { ": \($0)" } ?? "")")
        }
        cluster.invalidate(name)
    }

    public struct ConfigEntry: Sendable, Equatable {
        public var name: String
        public var value: String?
        /// `topic`, `broker`, `default` or `unknown`.
        public var source: String
        public var readOnly: Bool
    }

    public func describeTopicConfigs(_ name: TopicName) async throws -> [ConfigEntry] {
        let conn = try await cluster.anyConnection()
        var req = DescribeConfigsRequest()
        req.resources = [.init(resourceType: 2, resourceName: name.rawValue, configurationKeys: nil)]
        let v = try conn.version(for: DescribeConfigsRequest.self, max: 4)
        let resp = try await conn.send(req, version: v)
        guard let r = resp.results.first else { return [] }
        guard r.errorCode == .none else {
            if r.errorCode == .unknownTopicOrPartition { throw KafkaClientError.unknownTopic(name) }
            throw KafkaClientError.broker(r.errorCode, "describing configs of \(name)")
        }
        return r.configs.map { c in
            let source: String
            if v == 0 {
                source = c.isDefault ? "default" : "topic"
            } else {
                switch c.configSource {
                case 1: source = "topic"
                case 2, 3, 4: source = "broker"
                case 5: source = "default"
                default: source = "unknown"
                }
            }
            return ConfigEntry(name: c.name, value: c.value, source: source, readOnly: c.readOnly)
        }
    }

    /// Sets (value) or removes (nil: back to the default) topic configs.
    public func alterTopicConfigs(_ name: TopicName, _ changes: [String: String?]) async throws {
        let conn = try await cluster.anyConnection()
        var req = IncrementalAlterConfigsRequest()
        req.resources = [.init(resourceType: 2, resourceName: name.rawValue, configs: changes.sorted { $0.key < $1.key }.map {
            .init(name: $0.key, configOperation: $0.value == nil ? 1 : 0, value: $0.value ?? nil)
        })]
        let resp = try await conn.send(req, version: try conn.version(for: IncrementalAlterConfigsRequest.self, max: 1))
        if let r = resp.responses.first, r.errorCode != .none {
            throw KafkaClientError.broker(r.errorCode, "changing configs of \(name)\(r.errorMessage.map { ": \($0)" } ?? "")")
        }
    }

    /// Every topic (internal ones included when asked).
    public func listTopics(includeInternal: Bool = false) async throws -> [KafkaCluster.TopicInfo] {
        try await cluster.refreshMetadata(topics: nil).filter { includeInternal || !$0.isInternal }.sorted { $0.name < $1.name }
    }

    public struct ClusterDescription: Sendable, Equatable {
        public var clusterID: String?
        public var controller: BrokerID
        public var brokers: [KafkaCluster.BrokerInfo]
    }

    public func describeCluster() async throws -> ClusterDescription {
        try await cluster.refreshMetadata(topics: [])
        return ClusterDescription(clusterID: cluster.clusterID, controller: cluster.controller, brokers: cluster.knownBrokers)
    }
}
