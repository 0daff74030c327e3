/// Durable cluster metadata: topics, the cluster id and the producer-id counter.
///
/// A single-node region keeps it in files in the broker's data directory
/// (``EmbeddedMetadataStore``); multi-broker regions will keep it in etcd behind the same protocol.
public protocol MetadataStore: Sendable {
    /// The cluster id, created on first start.
    func clusterID() throws -> String
    func loadTopics() throws -> [TopicRecord]
    /// Replaces the stored topic set atomically.
    func saveTopics(_ topics: [TopicRecord]) throws
    /// Reserves `count` producer ids and returns the first; never returns the same id twice, even
    /// across restarts.
    func allocateProducerIDs(count: Int64) throws -> Int64
}
