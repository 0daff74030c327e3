/// What the cluster knows about one topic: its identity, shape and config overrides.
public struct TopicRecord: Codable, Sendable, Equatable {
    public var name: String
    /// Random UUID chosen at creation, in the 8-4-4-4-12 text form.
    public var topicID: String
    public var partitions: Int32
    public var replicationFactor: Int16
    /// Topic-level config overrides (keys as in Kafka, e.g. `retention.ms`).
    public var configs: [String: String]
    public var isInternal: Bool

    public init(name: String, topicID: String, partitions: Int32, replicationFactor: Int16 = 1,
                configs: [String: String] = [:], isInternal: Bool = false) {
        self.name = name
        self.topicID = topicID
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.configs = configs
        self.isInternal = isInternal
    }
}
