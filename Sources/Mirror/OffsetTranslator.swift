import KafkaClient
import KafkaProtocol
import Logging

/// Translates a consumer group's committed source offsets into target offsets from the mapping the
/// flow stored in the target — without the mirror process, so any tool can ask.
public enum OffsetTranslator {
    public struct Row: Sendable, Equatable {
        public var source: TopicPartition
        public var committed: Int64
        /// The remote partition, nil when the flow has not copied this partition.
        public var target: TopicPartition?
        /// Target offset of the first copied record at or after `committed`.
        public var translated: Int64?
        /// Source records at or after `committed` not yet in the target (what a failover now would miss
        /// until the mirror catches up).
        public var notYetCopied: Int64?
    }

    public static func translate(group: GroupID, flow: String, topic: TopicName? = nil, source: KafkaCluster, target: KafkaCluster,
                                 logger: Logger) async throws -> [Row] {
        let committed = try await KafkaAdmin(cluster: source).groupOffsets(group).filter { topic == nil || $0.key.topic == topic }
        let maps = try await OffsetMapStore.landed(flow: flow, target: target, logger: logger)
        let sourceEnds = committed.isEmpty ? [:] : try await KafkaAdmin(cluster: source).listOffsets(Array(committed.keys), .latest)
        var rows: [Row] = []
        for (tp, offset) in committed.sorted(by: { ($0.key.topic, $0.key.partition) < ($1.key.topic, $1.key.partition) }) {
            var row = Row(source: tp, committed: offset)
            if let loaded = maps[.init(flow: flow, topic: tp.topic, partition: tp.partition)] {
                let remote = TopicPartition(loaded.targetTopic, tp.partition)
                let map = loaded.map
                row.target = remote
                row.translated = map.translate(offset)
                if let copied = map.sourceEnd, let end = sourceEnds[tp] {
                    row.notYetCopied = ClusterLag.gap(end, max(copied, offset))
                }
            }
            rows.append(row)
        }
        return rows
    }
}
