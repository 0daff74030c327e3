import KafkaProtocol
import NIOCore

/// A v2 batch of string values, optionally idempotent.
func batch(_ values: [String], producerID: Int64 = -1, epoch: Int16 = -1, sequence: Int32 = -1, timestamp: Int64 = 1_000) throws -> ByteBuffer {
    var b = RecordBatchBuilder(producerID: producerID, producerEpoch: epoch, baseSequence: sequence)
    for (i, v) in values.enumerated() { b.append(key: nil, value: ByteBuffer(string: v), timestamp: timestamp + Int64(i)) }
    return try b.build()
}

func produceRequest(_ topic: TopicName, _ partition: Int32 = 0, _ records: ByteBuffer, acks: Int16 = -1) -> ProduceRequest {
    var r = ProduceRequest()
    r.acks = acks
    r.timeoutMs = 5000
    r.topicData = [.init(name: topic, partitionData: [.init(index: partition, records: .bytes(records))])]
    return r
}
