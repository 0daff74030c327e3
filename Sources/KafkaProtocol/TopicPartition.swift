/// A partition of a topic, e.g. `orders-3`.
public struct TopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var topic: TopicName
    public var partition: Int32
    public init(_ topic: TopicName, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
    public static func < (a: TopicPartition, b: TopicPartition) -> Bool {
        (a.topic.rawValue, a.partition) < (b.topic.rawValue, b.partition)
    }
    public var description: String { "\(topic)-\(partition)" }
}
