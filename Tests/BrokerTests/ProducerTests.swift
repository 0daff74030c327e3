import Broker
import Foundation
import KafkaClient
import KafkaProtocol
import KafkaWire
import NIOCore
import NIOPosix
import Testing
import TestSupport

@Suite("Swift producer", .timeLimit(.minutes(2)))
struct ProducerTests {
    func cluster(port: Int) -> KafkaCluster {
        KafkaCluster(bootstrap: [BootstrapAddress(host: "127.0.0.1", port: port)], group: MultiThreadedEventLoopGroup.singleton)
    }

    func createTopic(_ b: InProcessBroker, _ name: TopicName, partitions: Int32) async throws {
        let conn = try await b.connect()
        var create = CreateTopicsRequest()
        create.topics = [.init(name: name, numPartitions: partitions, replicationFactor: 1)]
        _ = try await conn.send(create)
        await conn.close()
    }

    func readAll(_ b: InProcessBroker, _ topic: TopicName, partitions: Int32, expect count: Int) async throws -> [ConsumerRecord] {
        let c = KafkaConsumer(cluster: cluster(port: b.port), config: ConsumerConfig())
        c.assign((0..<partitions).map { TopicPartition(topic, $0) })
        for p in 0..<partitions { c.seek(TopicPartition(topic, p), to: .earliest) }
        var out: [ConsumerRecord] = []
        let deadline = ContinuousClock.now + .seconds(30)
        while out.count < count && ContinuousClock.now < deadline { out += try await c.poll(timeout: .milliseconds(200)) }
        await c.close()
        return out
    }

    @Test func murmur2MatchesKafkaVectors() {
        // Values from Kafka's own test of Utils.murmur2.
        let cases: [(String, Int32)] = [
            ("21", -973_932_308), ("foobar", -790_332_482), ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971), ("abc", 479_470_107),
        ]
        for (s, h) in cases {
            #expect(Array(s.utf8).withUnsafeBytes { Partitioner.murmur2($0) } == h, "murmur2(\(s))")
        }
        #expect(Array("123456789".utf8).withUnsafeBytes { Partitioner.crc32($0) } == 0xCBF4_3926)
    }

    @Test func sendReturnsPartitionAndOffsetAndKeysStickToPartitions() async throws {
        let b = try await InProcessBroker()
        try await createTopic(b, "prod", partitions: 4)
        let producer = KafkaProducer(cluster: cluster(port: b.port))
        var byKey: [String: Set<Int32>] = [:]
        var lastOffset: [Int32: Int64] = [:]
        for i in 0..<200 {
            let key = "user-\(i % 13)"
            let m = try await producer.send(topic: "prod", key: ByteBuffer(string: key), value: ByteBuffer(string: "v\(i)"),
                                            headers: [RecordHeader(key: "n", value: ByteBuffer(string: "\(i)"))])
            byKey[key, default: []].insert(m.partition)
            #expect(m.offset == (lastOffset[m.partition] ?? -1) + 1, "offsets grow by one per partition")
            lastOffset[m.partition] = m.offset
            let expected = Partitioner.murmur2.partition(forKey: ByteBuffer(string: key), partitions: 4)
            #expect(m.partition == expected)
        }
        #expect(byKey.values.allSatisfy { $0.count == 1 })
        await producer.close()
        let records = try await readAll(b, "prod", partitions: 4, expect: 200)
        #expect(records.count == 200)
        #expect(records.first { $0.value == ByteBuffer(string: "v7") }?.headers == [RecordHeader(key: "n", value: ByteBuffer(string: "7"))])
        await b.stop()
    }

    @Test func idempotentRetriesAfterConnectionDropsNeitherDuplicateNorReorder() async throws {
        let b = try await InProcessBroker()
        try await createTopic(b, "idem", partitions: 2)
        let proxy = try TCPProxy(targetHost: "127.0.0.1", targetPort: b.port)
        defer { proxy.close() }
        b.server.broker.advertisedListeners = [try ListenerAddress(parsing: "PLAINTEXT://127.0.0.1:\(proxy.port)")]
        var config = ProducerConfig()
        config.lingerMs = 1
        config.batchSize = 2_000
        config.retryBackoffMs = 20
        let producer = KafkaProducer(cluster: cluster(port: proxy.port), config: config)
        func logEnd() -> Int64 {
            (0..<2).reduce(0) { $0 + (b.server.broker.logs.partition("idem", $1)?.offsets.logEndOffset ?? 0) }
        }
        // Records go out until the cuts are done (at least 6,000), so a fast run cannot finish
        // before the faults have happened.
        let done = ManagedAtomicFlag()
        let sending = Task {
            var i = 0
            while i < 6_000 || !done.value {
                try await producer.enqueue(topic: "idem", key: ByteBuffer(string: "k\(i % 2)"), value: ByteBuffer(string: "\(i)"))
                i += 1
            }
            try await producer.flush()
            return i
        }
        // Three times the fault at the moment that matters: the broker has answered a produce
        // whose answer the proxy holds back, and the connection is cut. The producer must send that
        // batch again (a retry), and the broker must take the retry for the duplicate it is. Between
        // cuts the producer writes steadily (it has metadata and a producer id), so the answer held
        // back is a produce's.
        #expect(await eventually(30) { logEnd() > 0 })
        var cuts = 0
        for _ in 0..<3 {
            proxy.hold(.downstream)
            let answered = await eventually(30) { proxy.heldChunks(.downstream) > 0 }
            guard answered else { proxy.release(); break }
            proxy.cutAll()
            proxy.release()
            cuts += 1
            // The producer reconnects and gets answers again before the next cut.
            let after = logEnd()
            _ = await eventually(30) { logEnd() > after }
        }
        done.set()
        let total = try await sending.value
        #expect(cuts == 3, "each cut came with a produce's answer held back")
        #expect(producer.retriedBatches >= 3, "each cut batch was sent again: \(producer.retriedBatches)")
        await producer.close()
        let records = try await readAll(b, "idem", partitions: 2, expect: total)
        #expect(records.count == total, "no record lost or duplicated: \(records.count)")
        for p in [Int32(0), 1] {
            let values = records.filter { $0.partition == p }.map { Int(String(buffer: $0.value!))! }
            #expect(values == values.sorted(), "partition \(p) keeps the send order")
            #expect(Set(values).count == values.count, "partition \(p) has no duplicate")
        }
        await b.stop()
    }

    @Test func bufferMemoryBoundsWhatIsQueued() async throws {
        let b = try await InProcessBroker()
        try await createTopic(b, "bp", partitions: 1)
        var config = ProducerConfig()
        config.bufferMemory = 64 * 1024
        config.batchSize = 16 * 1024
        let producer = KafkaProducer(cluster: cluster(port: b.port), config: config)
        let value = ByteBuffer(repeating: 0x61, count: 1000)
        for _ in 0..<3_000 { try await producer.enqueue(topic: "bp", value: value) }
        try await producer.flush()
        await producer.close()
        let conn = try await b.connect()
        var list = ListOffsetsRequest()
        list.topics = [.init(name: "bp", partitions: [.init(partitionIndex: 0, timestamp: -1)])]
        #expect(try await conn.send(list).topics[0].partitions[0].offset == 3_000)
        await conn.close()
        await b.stop()
    }
}

final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var v = false
    func set() { lock.lock(); v = true; lock.unlock() }
    var value: Bool { lock.lock(); defer { lock.unlock() }; return v }
}
