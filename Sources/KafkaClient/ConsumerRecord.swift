import KafkaProtocol
import NIOCore

/// A record delivered to a consumer, with where it came from.
public struct ConsumerRecord: Sendable, Equatable {
    public var topic: TopicName
    public var partition: Int32
    public var offset: Int64
    public var timestamp: Int64
    public var key: ByteBuffer?
    public var value: ByteBuffer?
    public var headers: [RecordHeader]

    public var topicPartition: TopicPartition { TopicPartition(topic, partition) }
}
