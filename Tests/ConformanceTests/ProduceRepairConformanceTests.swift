import Foundation
import KafkaProtocol
import KafkaWire
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// A Sarama-style idempotent producer (Go; `Version = 2.1.0`, `Idempotent = true`) sends v2 batches
/// whose header max timestamp is -1 while its records carry CreateTime timestamps. Apache Kafka
/// stores them with the records' maximum in the header; so must we, and what kcat and
/// confluent-kafka read back (record times, offsets for times, the max-timestamp offset) follows.
/// The Go client is not at hand here, so its requests are sent as raw frames of the versions it uses.
@Suite("Produce repair seen by real clients", .timeLimit(.minutes(3)),
       .enabled(if: ExternalTools.shouldRun(ExternalTools.kcat) && ExternalTools.shouldRun(ExternalTools.python)))
struct ProduceRepairConformanceTests {
    static func batch(base: Int64, count: Int, producer: (id: Int64, epoch: Int16)?, headerMaxTimestamp: Int64) throws -> ByteBuffer {
        var b = RecordBatchBuilder(producerID: producer?.id ?? -1, producerEpoch: producer?.epoch ?? -1, baseSequence: producer == nil ? -1 : 0)
        for i in 0..<count {
            b.append(key: ByteBuffer(string: "k\(i)"), value: ByteBuffer(string: "v\(i)"), timestamp: base + Int64(i) * 1000)
        }
        var out = try b.build()
        let at = out.readerIndex
        out.setInteger(headerMaxTimestamp, at: at + RecordBatchHeader.maxTimestampOffset, endianness: .big)
        let crc = CRC32C.checksum(out, at: at + RecordBatchHeader.attributesOffset, length: out.readableBytes - RecordBatchHeader.attributesOffset)
        out.setInteger(crc, at: at + RecordBatchHeader.crcOffset, endianness: .big)
        return out
    }

    @Test func headerMaxTimestampMinusOneAndAWrongValueAreStoredWithTheRecordsMaximum() async throws {
        let broker = try await BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        let topic = TopicName("sarama-ts")
        let conn = try await KafkaConnection.connect(host: "127.0.0.1", port: broker.port, group: MultiThreadedEventLoopGroup.singleton,
                                                     clientID: "sarama")
        var create = CreateTopicsRequest()
        create.topics = [.init(name: topic, numPartitions: 1, replicationFactor: 1)]
        _ = try await conn.send(create, version: 3)
        // Sarama 1.22 at Version 2.1.0: InitProducerId v1, then Produce v7.
        let pid = try await conn.send(InitProducerIDRequest(transactionalID: nil, transactionTimeoutMs: 60_000), version: 1)
        #expect(pid.errorCode == .none)
        let t0 = Int64(Date().timeIntervalSince1970 * 1000) - 60_000
        func produce(_ records: ByteBuffer) async throws -> ProduceResponse.PartitionProduceResponse {
            var req = ProduceRequest()
            req.acks = -1
            req.timeoutMs = 10_000
            req.topicData = [.init(name: topic, partitionData: [.init(index: 0, records: .bytes(records))])]
            return try await conn.send(req, version: 7).responses[0].partitionResponses[0]
        }
        let sarama = try await produce(try Self.batch(base: t0, count: 10, producer: (pid.producerID.rawValue, pid.producerEpoch), headerMaxTimestamp: -1))
        #expect(sarama.errorCode == .none, "\(sarama.errorMessage ?? "")")
        #expect(sarama.baseOffset == 0)
        let wrong = try await produce(try Self.batch(base: t0 + 10_000, count: 5, producer: nil, headerMaxTimestamp: t0 - 3_600_000))
        #expect(wrong.errorCode == .none, "\(wrong.errorMessage ?? "")")
        #expect(wrong.baseOffset == 10)
        await conn.close()

        // kcat: every record's time, and the offset of the first record at or after a time.
        let kcat = try ExternalTools.require(ExternalTools.kcat, "kcat")
        let c = try await runProcess(kcat, ["-b", broker.bootstrap, "-C", "-t", "sarama-ts", "-o", "beginning", "-e", "-q", "-f", "%o %T\\n"])
        #expect(c.status == 0, "\(c.stderr)")
        #expect(c.stdout == (0..<15).map { "\($0) \(t0 + Int64($0) * 1000)\n" }.joined())
        for (time, offset) in [(t0 + 5_000, 5), (t0 + 12_000, 12), (t0 + 14_000, 14)] {
            let q = try await runProcess(kcat, ["-b", broker.bootstrap, "-Q", "-t", "sarama-ts:0:\(time)"])
            #expect(q.status == 0 && q.stdout.contains("offset \(offset)"), "kcat -Q \(time): \(q.stdout) \(q.stderr)")
        }

        // confluent-kafka: the same lookups, and ListOffsets MAX_TIMESTAMP (which the header's max
        // timestamp answers).
        let python = try ExternalTools.require(ExternalTools.python, "python venv")
        let script = ExternalTools.packageRoot.appendingPathComponent("Tests/ConformanceTests/python/ck_timestamps.py").path
        let r = try await runProcess(python, [script, broker.bootstrap, "sarama-ts", "15", "\(t0 + 5_000)", "\(t0 + 12_000)", "\(t0 + 14_001)"])
        let line = try #require(r.stdout.split(separator: "\n").last, "\(r.stderr)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect((obj["records"] as? [[Int]])?.map { $0[1] } == (0..<15).map { Int(t0) + $0 * 1000 })
        #expect(obj["offsets_for_times"] as? [Int] == [5, 12, -1], "\(obj["lookup_errors"] ?? "")")
        #expect(obj["max_timestamp"] as? [Int] == [14, Int(t0) + 14_000])
    }
}
