import KafkaProtocol

/// Computes a group's assignment on the leader. Implementations must give the same result as the
/// Java client's assignor of the same name so mixed groups agree.
public protocol PartitionAssignor: Sendable {
    /// The protocol name in JoinGroup (`range`, `cooperative-sticky`, ...).
    var name: String { get }
    /// Whether members keep their partitions through a rebalance (cooperative) or give all up (eager).
    var isCooperative: Bool { get }
    /// `members`: member id → subscription; `partitions`: partition count per topic.
    func assign(members: [String: ConsumerProtocolSubscription], partitions: [TopicName: Int32]) -> [String: [TopicPartition]]
}

/// Kafka's range assignor: per topic, partitions in order are split into contiguous ranges over
/// the subscribed members sorted by member id; the first `partitions % members` get one extra.
public struct RangeAssignor: PartitionAssignor {
    public let name = "range"
    public let isCooperative = false
    public init() {}

    public func assign(members: [String: ConsumerProtocolSubscription], partitions: [TopicName: Int32]) -> [String: [TopicPartition]] {
        var out: [String: [TopicPartition]] = Dictionary(uniqueKeysWithValues: members.keys.map { ($0, []) })
        let topics = Set(members.values.flatMap { $0.topics.map { TopicName($0) } })
        for topic in topics.sorted() {
            guard let count = partitions[topic] else { continue }
            let subscribers = members.filter { $0.value.topics.contains(topic.rawValue) }.keys.sorted()
            guard !subscribers.isEmpty else { continue }
            let per = Int(count) / subscribers.count
            let extra = Int(count) % subscribers.count
            var next: Int32 = 0
            for (i, m) in subscribers.enumerated() {
                let n = per + (i < extra ? 1 : 0)
                for _ in 0..<n {
                    out[m, default: []].append(TopicPartition(topic, next))
                    next += 1
                }
            }
        }
        return out
    }
}

/// Kafka's cooperative-sticky assignor: balanced like round robin, but members keep the partitions
/// they own; a partition that must move is first revoked (it is left out of this round's
/// assignment) and handed to its new owner in the follow-up rebalance.
public struct CooperativeStickyAssignor: PartitionAssignor {
    public let name = "cooperative-sticky"
    public let isCooperative = true
    public init() {}

    public func assign(members: [String: ConsumerProtocolSubscription], partitions: [TopicName: Int32]) -> [String: [TopicPartition]] {
        let ids = members.keys.sorted()
        guard !ids.isEmpty else { return [:] }
        var all: [TopicPartition] = []
        for (t, n) in partitions.sorted(by: { $0.key < $1.key }) where members.values.contains(where: { $0.topics.contains(t.rawValue) }) {
            for p in 0..<n { all.append(TopicPartition(t, p)) }
        }
        func subscribed(_ m: String, _ tp: TopicPartition) -> Bool { members[m]!.topics.contains(tp.topic.rawValue) }
        // Current owners (first claim wins if two members claim the same partition).
        var owner: [TopicPartition: String] = [:]
        var owned: [String: [TopicPartition]] = Dictionary(uniqueKeysWithValues: ids.map { ($0, []) })
        for m in ids {
            for t in members[m]!.ownedPartitions {
                for p in t.partitions {
                    let tp = TopicPartition(t.topic, p)
                    if owner[tp] == nil, all.contains(tp), subscribed(m, tp) {
                        owner[tp] = m
                        owned[m]!.append(tp)
                    }
                }
            }
        }
        // Quotas: as even as possible.
        let base = all.count / ids.count, extra = all.count % ids.count
        var quota: [String: Int] = [:]
        for (i, m) in ids.sorted(by: { (owned[$0]!.count, $0) > (owned[$1]!.count, $1) }).enumerated() {
            quota[m] = base + (i < extra ? 1 : 0)
        }
        var result: [String: [TopicPartition]] = [:]
        for m in ids {
            let keep = owned[m]!.sorted().prefix(quota[m]!)
            result[m] = Array(keep)
        }
        // Unowned partitions go to members below quota; revoked ones wait for the next round.
        for tp in all where owner[tp] == nil {
            if let m = ids.filter({ result[$0]!.count < quota[$0]! && subscribed($0, tp) })
                .min(by: { (result[$0]!.count, $0) < (result[$1]!.count, $1) }) {
                result[m]!.append(tp)
            }
        }
        return result.mapValues { $0.sorted() }
    }
}
