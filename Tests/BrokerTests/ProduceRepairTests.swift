@testable import Broker
import Foundation
import KafkaProtocol
import KafkaWire
import NIOCore
import Testing
import TestSupport

/// Batches whose broker-owned fields disagree with their records are stored repaired, as Apache
/// Kafka's log validator stores them, instead of being refused: the producer is not at fault for a
/// field the broker sets.
@Suite("Produce repairs what Kafka repairs", .timeLimit(.minutes(2)))
struct ProduceRepairTests {
    /// A batch of `values` timestamped `base`, `base + 1`, … with `mutate` applied to its bytes and
    /// the CRC made valid again, so only the record-level rules see the change.
    static func crafted(_ values: [String], base: Int64, codec: CompressionCodec = .none, producerID: Int64 = -1,
                        keys: Bool = false, _ mutate: (inout ByteBuffer, Int) -> Void = { _, _ in }) throws -> ByteBuffer {
        var b = RecordBatchBuilder(producerID: producerID, producerEpoch: producerID >= 0 ? 0 : -1, baseSequence: producerID >= 0 ? 0 : -1)
        for (i, v) in values.enumerated() {
            b.append(key: keys ? ByteBuffer(string: "k\(i)") : nil, value: ByteBuffer(string: v), timestamp: base + Int64(i))
        }
        var out = try b.build(compression: codec)
        let at = out.readerIndex
        mutate(&out, at)
        let crc = CRC32C.checksum(out, at: at + RecordBatchHeader.attributesOffset, length: out.readableBytes - RecordBatchHeader.attributesOffset)
        out.setInteger(crc, at: at + RecordBatchHeader.crcOffset, endianness: .big)
        return out
    }

    static func setMaxTimestamp(_ ts: Int64) -> (inout ByteBuffer, Int) -> Void {
        { buf, at in buf.setInteger(ts, at: at + RecordBatchHeader.maxTimestampOffset, endianness: .big) }
    }

    func produce(_ conn: KafkaConnection, _ topic: TopicName, _ records: ByteBuffer) async throws -> ProduceResponse.PartitionProduceResponse {
        try await conn.send(produceRequest(topic, 0, records), version: 9).responses[0].partitionResponses[0]
    }

    /// Every stored batch of partition 0 with its records, checked as a consumer checks them (CRC).
    func stored(_ conn: KafkaConnection, _ topic: TopicName) async throws -> [(header: RecordBatchHeader, records: [Record])] {
        let bytes = try await storedBytes(conn, topic)
        return try RecordBatch.batches(in: bytes).map { b in
            (try RecordBatch.validate(bytes, at: b.index), try RecordBatch.records(in: bytes, at: b.index))
        }
    }

    func storedBytes(_ conn: KafkaConnection, _ topic: TopicName) async throws -> ByteBuffer {
        var fetch = FetchRequest()
        fetch.maxWaitMs = 0
        fetch.maxBytes = 1 << 20
        fetch.topics = [.init(topic: topic, partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)])]
        let f = try await conn.send(fetch, version: 11)
        guard case .bytes(let bytes)? = f.responses[0].partitions[0].records else { return ByteBuffer() }
        return bytes
    }

    @Test(arguments: [CompressionCodec.none, .gzip])
    func aHeaderMaxTimestampOfMinusOneOrAWrongOneIsReplacedByTheRecordsMaximum(_ codec: CompressionCodec) async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        let topic = TopicName("maxts-\(codec)")
        _ = try await conn.send(MetadataRequest(topics: [.init(name: topic)]))
        let base = Int64(Date().timeIntervalSince1970 * 1000) - 10_000
        // Sarama 1.22's idempotent producer: max timestamp -1 with CreateTime records.
        let sarama = try Self.crafted(["a", "b", "c"], base: base, codec: codec, producerID: 1, Self.setMaxTimestamp(-1))
        #expect(try await produce(conn, topic, sarama).errorCode == .none)
        // A value no record has, and one below the largest.
        #expect(try await produce(conn, topic, try Self.crafted(["d", "e"], base: base + 100, codec: codec, Self.setMaxTimestamp(5_000))).errorCode == .none)
        #expect(try await produce(conn, topic, try Self.crafted(["f", "g"], base: base + 200, codec: codec, Self.setMaxTimestamp(base + 200))).errorCode == .none)
        let batches = try await stored(conn, topic)
        #expect(batches.map(\.header.maxTimestamp) == [base + 2, base + 101, base + 201])
        #expect(batches.allSatisfy { $0.header.compression == codec && !$0.header.isLogAppendTime })
        #expect(batches.flatMap(\.records).map { String(buffer: $0.value!) } == ["a", "b", "c", "d", "e", "f", "g"])
        #expect(batches.flatMap(\.records).map(\.timestamp) == [base, base + 1, base + 2, base + 100, base + 101, base + 200, base + 201])
        #expect(batches[0].header.producerID == 1 && batches[0].header.baseSequence == 0, "producer fields are kept")
        // The time index follows the repaired value: the first record at or after base + 101.
        var list = ListOffsetsRequest()
        list.topics = [.init(name: topic, partitions: [.init(partitionIndex: 0, timestamp: base + 101)])]
        #expect(try await conn.send(list, version: 7).topics[0].partitions[0].offset == 4)
        // The idempotent retry is still recognised as the same batch.
        let retry = try await produce(conn, topic, sarama)
        #expect(retry.errorCode == .none && retry.baseOffset == 0)
        await conn.close()
        await b.stop()
    }

    @Test func offsetDeltasAndNegativeLengthsAreWrittenAsKafkaReadsThem() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "rewrite")]))
        let first = RecordBatchHeader.size
        let base = Int64(Date().timeIntervalSince1970 * 1000)
        // One record: length, attributes, timestamp delta 0, offset delta, key length, …
        let delta = try Self.crafted(["x"], base: base) { buf, at in buf.setInteger(UInt8(10), at: at + first + 3) }  // offset delta 5
        let key = try Self.crafted(["y"], base: base) { buf, at in buf.setInteger(UInt8(0x2B), at: at + first + 4) }   // key length -22
        #expect(try await produce(conn, "rewrite", delta).errorCode == .none)
        #expect(try await produce(conn, "rewrite", key).errorCode == .none)
        let batches = try await stored(conn, "rewrite")
        #expect(batches.flatMap(\.records).map(\.offset) == [0, 1])
        #expect(batches.flatMap(\.records).map { $0.key == nil } == [true, true])
        #expect(batches.flatMap(\.records).map { String(buffer: $0.value!) } == ["x", "y"])
        // The stored bytes: offset delta 0 in the first batch, key length -1 (zig-zag 0x01) in the
        // second, the only negative length librdkafka reads.
        let raw = try await storedBytes(conn, "rewrite")
        let second = RecordBatch.batches(in: raw)[1].index
        #expect(raw.getInteger(at: raw.readerIndex + first + 3, as: UInt8.self) == 0)
        #expect(raw.getInteger(at: second + first + 4, as: UInt8.self) == 0x01)
        await conn.close()
        await b.stop()
    }

    @Test func theLogAppendTimeTypeFromAProducerIsTakenOnCreateTimeTopicsAndRefusedOnLogAppendTimeTopics() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "create-time")]))
        var create = CreateTopicsRequest()
        create.topics = [.init(name: "append-time", numPartitions: 1, replicationFactor: 1,
                               configs: [.init(name: "message.timestamp.type", value: "LogAppendTime")])]
        _ = try await conn.send(create)
        let base = Int64(Date().timeIntervalSince1970 * 1000) - 5_000
        let lat: (inout ByteBuffer, Int) -> Void = { buf, at in
            let a = buf.getInteger(at: at + RecordBatchHeader.attributesOffset, endianness: .big, as: Int16.self)!
            buf.setInteger(a | 0x8, at: at + RecordBatchHeader.attributesOffset, endianness: .big)
            buf.setInteger(base + 50, at: at + RecordBatchHeader.maxTimestampOffset, endianness: .big)
        }
        #expect(try await produce(conn, "create-time", try Self.crafted(["p", "q"], base: base, lat)).errorCode == .none)
        let batches = try await stored(conn, "create-time")
        #expect(batches.count == 1 && !batches[0].header.isLogAppendTime)
        #expect(batches[0].records.map(\.timestamp) == [base + 50, base + 50], "the batch's time is every record's, as Kafka reads it")
        #expect(batches[0].header.maxTimestamp == base + 50)
        let refused = try await produce(conn, "append-time", try Self.crafted(["r"], base: base, lat))
        #expect(refused.errorCode == .invalidTimestamp, "\(refused.errorMessage ?? "")")
        // With no time in the batch a CreateTime topic refuses it too.
        let none = try Self.crafted(["s"], base: base) { buf, at in
            lat(&buf, at)
            buf.setInteger(Int64(-1), at: at + RecordBatchHeader.maxTimestampOffset, endianness: .big)
        }
        #expect(try await produce(conn, "create-time", none).errorCode == .invalidTimestamp)
        await conn.close()
        await b.stop()
    }
}
