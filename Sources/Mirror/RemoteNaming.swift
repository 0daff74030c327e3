import KafkaProtocol
import Topology

/// How a flow names remote topics and which source topics it must never copy.
///
/// With `prefix` naming a source topic `t` becomes `<source>.t` in the target. A topic whose name
/// already starts with a chain of region prefixes that includes the target (`eu-west.orders` seen
/// by a flow into `eu-west`, or `us-east.eu-west.orders`) holds records that came from the target,
/// so it is skipped — the rule MirrorMaker 2's default replication policy follows. With `identity`
/// naming the name stays; loops are stopped record by record with a provenance header instead.
public struct RemoteNaming: Sendable, Equatable {
    public var naming: Topology.Flow.Naming
    public var sourceRegion: String
    public var targetRegion: String
    /// Every region of the topology, to recognise prefix chains.
    public var regions: Set<String>

    public init(naming: Topology.Flow.Naming, sourceRegion: String, targetRegion: String, regions: Set<String>) {
        self.naming = naming
        self.sourceRegion = sourceRegion
        self.targetRegion = targetRegion
        self.regions = regions
    }

    /// Topics no flow copies: Kafka's and Meridian's own (`__consumer_offsets`, `*.internal`,
    /// MirrorMaker 2's `mm2-*`, heartbeats that already crossed a flow) — their contents describe
    /// one cluster or one link only.
    public static func isInternal(_ topic: String) -> Bool {
        topic.hasPrefix("__") || topic.hasSuffix(".internal") || topic.hasSuffix("-internal") || topic.hasPrefix("mm2-")
            || topic.hasSuffix(".heartbeats")
    }

    /// The regions a topic's name says its records passed through, outermost first
    /// (`us-east.eu-west.orders` → `["us-east", "eu-west"]`).
    public func prefixChain(of topic: String) -> [String] {
        var chain: [String] = []
        var rest = Substring(topic)
        while let dot = rest.firstIndex(of: "."), regions.contains(String(rest[..<dot])) {
            chain.append(String(rest[..<dot]))
            rest = rest[rest.index(after: dot)...]
        }
        return chain
    }

    /// The name of `topic`'s copy in the target, or nil when the topic must not be copied
    /// (internal, or it came from the target region).
    public func remoteName(for topic: TopicName) -> TopicName? {
        if Self.isInternal(topic.rawValue) { return nil }
        // The source's heartbeats always arrive as `<source>.heartbeats`, whatever the naming, so
        // each link's heartbeats stay apart in the target.
        if topic == MM2Records.heartbeatsTopic { return TopicName("\(sourceRegion).heartbeats") }
        switch naming {
        case .prefix:
            if prefixChain(of: topic.rawValue).contains(targetRegion) { return nil }
            let name = "\(sourceRegion).\(topic.rawValue)"
            return name.utf8.count <= 249 ? TopicName(name) : nil
        case .identity:
            return topic
        }
    }
}
