import KafkaProtocol

/// Settings of a ``KafkaProducer``, named after the Java client's where they mean the same.
public struct ProducerConfig: Sendable {
    /// -1 (all), 0 or 1.
    public var acks: Int16 = -1
    /// Idempotent delivery: a producer id and per-partition sequence numbers, so retries never
    /// duplicate or reorder. Requires acks=-1 (as in Kafka).
    public var enableIdempotence = true
    /// How long a partition's batch may wait for more records before it is sent.
    public var lingerMs: Int64 = 5
    /// Largest batch per partition in bytes (uncompressed).
    public var batchSize = 1_000_000
    /// Bytes of records waiting to be sent before `send` waits (`buffer.memory`).
    public var bufferMemory = 64 << 20
    /// Produce requests in flight per broker connection (at most 5 with idempotence).
    public var maxInFlight = 5
    public var compression: CompressionCodec = .none
    public var partitioner: Partitioner = .murmur2
    /// Give up on a record this long after it was handed to the producer (`delivery.timeout.ms`).
    public var deliveryTimeoutMs: Int64 = 120_000
    public var requestTimeoutMs: Int32 = 30_000
    public var retryBackoffMs: Int64 = 100

    public init() {}
}

/// Where a record was written.
public struct RecordMetadata: Sendable, Equatable {
    public var topic: TopicName
    public var partition: Int32
    /// -1 when acks=0 (the broker does not answer).
    public var offset: Int64
    public var timestamp: Int64
}
