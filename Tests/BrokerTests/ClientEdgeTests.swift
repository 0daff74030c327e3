import Broker
import Foundation
import KafkaClient
import KafkaProtocol
import KafkaWire
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// The Swift client in the corners a mirror will meet: sequence wrap, a batch lost to its delivery
/// timeout, no reset policy, a slow reader, and rolls under pipelined appends.
@Suite("Client edges", .timeLimit(.minutes(2)))
struct ClientEdgeTests {
    func cluster(port: Int) -> KafkaCluster {
        KafkaCluster(bootstrap: [BootstrapAddress(host: "127.0.0.1", port: port)], group: MultiThreadedEventLoopGroup.singleton)
    }

    func values(_ b: InProcessBroker, _ topic: TopicName, expect count: Int) async throws -> [String] {
        let c = KafkaConsumer(cluster: cluster(port: b.port), config: ConsumerConfig())
        c.assign([TopicPartition(topic, 0)])
        c.seek(TopicPartition(topic, 0), to: .earliest)
        var out: [String] = []
        let deadline = ContinuousClock.now + .seconds(30)
        while out.count < count && ContinuousClock.now < deadline {
            out += try await c.poll(timeout: .milliseconds(200)).map { String(buffer: $0.value!) }
        }
        await c.close()
        return out
    }

    @Test func sequencesWrapAsKafkasDo() {
        #expect(RecordBatch.incrementSequence(5, by: 3) == 8)
        #expect(RecordBatch.incrementSequence(Int32.max, by: 1) == 0)
        #expect(RecordBatch.incrementSequence(Int32.max - 1, by: 5) == 3)
        var h = RecordBatchHeader(lastOffsetDelta: 4, baseSequence: Int32.max - 1)
        #expect(h.lastSequence == 2)
        h.baseSequence = 10
        #expect(h.lastSequence == 14)
    }

    @Test func aMetadataRequestCutInFlightIsAskedAgain() async throws {
        let b = try await InProcessBroker()
        let proxy = try TCPProxy(targetHost: "127.0.0.1", targetPort: b.port)
        defer { proxy.close() }
        b.server.broker.advertisedListeners = [try ListenerAddress(parsing: "PLAINTEXT://127.0.0.1:\(proxy.port)")]
        let c = cluster(port: proxy.port)
        _ = try await c.refreshMetadata(topics: [])
        // The next metadata request is held on the link, and the link is cut under it.
        proxy.setDelay(.seconds(30))
        let before = proxy.bytesFromClients
        let refresh = Task { try await c.refreshMetadata(topics: []) }
        let deadline = ContinuousClock.now + .seconds(20)
        while proxy.bytesFromClients == before && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(proxy.bytesFromClients > before, "the request reached the link")
        proxy.cutAll()
        proxy.setDelay(.zero)
        let brokers = try await refresh.value
        #expect(brokers.isEmpty, "answered on a new connection instead of failing with the cut")
        await c.close()
        await b.stop()
    }

    @Test func aBatchLostToItsDeliveryTimeoutDoesNotWedgeThePartition() async throws {
        let b = try await InProcessBroker()
        let proxy = try TCPProxy(targetHost: "127.0.0.1", targetPort: b.port)
        defer { proxy.close() }
        b.server.broker.advertisedListeners = [try ListenerAddress(parsing: "PLAINTEXT://127.0.0.1:\(proxy.port)")]
        var config = ProducerConfig()
        config.lingerMs = 0
        config.retryBackoffMs = 20
        config.deliveryTimeoutMs = 10_000
        let producer = KafkaProducer(cluster: cluster(port: proxy.port), config: config)
        // The first record, with as many attempts as a loaded machine needs (CI: with one core kept
        // busy, the first attempt, which also creates the topic and gets a producer id, outlasted
        // its 10 s while every test of the suite was starting).
        var first: RecordMetadata?
        for _ in 0..<3 where first == nil { first = try? await producer.send(topic: "gap", value: ByteBuffer(string: "first"), partition: 0) }
        try #require(first != nil, "the first record is acknowledged")
        // The next batch (sequence 1) never reaches the broker: every attempt is held on the link
        // and cut, until its delivery timeout.
        proxy.setDelay(.seconds(5))
        let lostDone = ManagedAtomicFlag()
        let lost = Task {
            defer { lostDone.set() }
            return try? await producer.send(topic: "gap", value: ByteBuffer(string: "lost"), partition: 0)
        }
        let cutting = Task {
            while !lostDone.value {
                try? await Task.sleep(for: .milliseconds(100))
                proxy.cutAll()
            }
        }
        #expect(await lost.value == nil, "the held batch fails after its delivery timeout")
        await cutting.value
        proxy.setDelay(.zero)
        // Connections still being opened through the slow link are dropped, so new ones are fast.
        proxy.cutAll()
        // Without an epoch bump the next sequence (2) would leave a gap the broker refuses forever:
        // every attempt would fail. On a machine loaded enough that one attempt (reconnect, epoch
        // bump, produce) outlasts its delivery timeout, a second attempt still gets through.
        var after: RecordMetadata?
        var failures: [String] = []
        for _ in 0..<3 where after == nil {
            do { after = try await producer.send(topic: "gap", value: ByteBuffer(string: "after"), partition: 0) } catch { failures.append("\(error)") }
        }
        #expect(after != nil, "the partition is wedged: \(failures)")
        await producer.close()
        let got = try await values(b, "gap", expect: 2)
        // An attempt that timed out may still have landed: "after" can appear more than once, but
        // nothing is reordered and the first record stays first.
        #expect(got.first == "first" && got.count >= 2 && got.drop { $0 == "first" }.allSatisfy { $0 == "after" || $0 == "lost" } && got.last == "after", "\(got)")
        await b.stop()
    }

    /// `meridian lag report` crashed: a consumer's prefetch, cancelled by its close, connected after
    /// the command had closed the cluster and shut its event loops down, and NIO refuses a channel
    /// on a loop that is gone. A closed cluster opens nothing.
    @Test func aClosedClusterOpensNoConnection() async throws {
        let b = try await InProcessBroker()
        let elg = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let c = KafkaCluster(bootstrap: [BootstrapAddress(host: "127.0.0.1", port: b.port)], group: elg)
        try await c.refreshMetadata(topics: [])
        let broker = try #require(c.knownBrokers.first?.id)
        await c.close()
        await #expect(throws: KafkaClientError.self) { _ = try await c.anyConnection() }
        await #expect(throws: KafkaClientError.self) { _ = try await c.connection(to: broker, for: .fetch) }
        // A consumer polling while everything is closed under it, as a command's end does, many times.
        for _ in 0..<20 {
            let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let cluster = KafkaCluster(bootstrap: [BootstrapAddress(host: "127.0.0.1", port: b.port)], group: loops)
            let consumer = KafkaConsumer(cluster: cluster, config: ConsumerConfig())
            consumer.assign([TopicPartition("closing", 0)])
            consumer.seek(TopicPartition("closing", 0), to: .earliest)
            _ = try? await consumer.poll(timeout: .milliseconds(1))
            await consumer.close()
            await cluster.close()
            try await loops.shutdownGracefully()
        }
        try await elg.shutdownGracefully()
        await b.stop()
    }

    @Test func noResetPolicyThrowsInsteadOfJumpingToTheEnd() async throws {
        let b = try await InProcessBroker()
        let producer = KafkaProducer(cluster: cluster(port: b.port))
        for i in 0..<3 { _ = try await producer.send(topic: "strict", value: ByteBuffer(string: "v\(i)"), partition: 0) }
        await producer.close()
        var config = ConsumerConfig(groupID: "never-committed")
        config.autoOffsetReset = .none
        let c = KafkaConsumer(cluster: cluster(port: b.port), config: config)
        c.assign([TopicPartition("strict", 0)])
        await #expect { _ = try await c.poll(timeout: .milliseconds(500)) } throws: { error in
            if case KafkaClientError.noOffsetForPartition = error { return true }
            return false
        }
        // A position outside the log is not silently moved either.
        c.seek(TopicPartition("strict", 0), to: .offset(1_000))
        await #expect { for _ in 0..<20 { _ = try await c.poll(timeout: .milliseconds(100)) } } throws: { error in
            if case KafkaClientError.noOffsetForPartition = error { return true }
            return false
        }
        // An explicit seek makes it usable again.
        c.seek(TopicPartition("strict", 0), to: .offset(1))
        var got: [ConsumerRecord] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while got.count < 2 && ContinuousClock.now < deadline { got += try await c.poll(timeout: .milliseconds(200)) }
        #expect(got.map(\.offset) == [1, 2])
        await c.close()
        await b.stop()
    }

    @Test func theRecordStreamReadsOnlyAsFastAsTheCallerAndCommitsOnlyWhatItHandedOut() async throws {
        let b = try await InProcessBroker()
        var pconfig = ProducerConfig()
        pconfig.lingerMs = 5
        // Small batches (about 15 records): a fetch returns its first batch whole whatever its
        // size, so with the default 1 MB batches a busy machine's first batch alone could hold
        // hundreds of records and the bound below would measure the producer, not the stream.
        pconfig.batchSize = 16 * 1024
        let producer = KafkaProducer(cluster: cluster(port: b.port), config: pconfig)
        for i in 0..<2_000 {
            try await producer.enqueue(topic: "stream", value: ByteBuffer(string: "\(i)-" + String(repeating: "s", count: 1000)), partition: 0)
        }
        try await producer.flush()
        await producer.close()
        var config = ConsumerConfig(groupID: "streamer")
        config.autoOffsetReset = .earliest
        config.maxPartitionFetchBytes = 64 * 1024
        let c = KafkaConsumer(cluster: cluster(port: b.port), config: config)
        c.assign([TopicPartition("stream", 0)])
        var taken: [ConsumerRecord] = []
        for try await r in c.records() {
            taken.append(r)
            if taken.count == 5 { break }
        }
        // Give a reader that ran ahead the time to do so; this one must not have fetched on.
        try await Task.sleep(for: .milliseconds(300))
        let position = c.currentPositions[TopicPartition("stream", 0)] ?? 0
        #expect(position < 200, "the stream fetched only what one poll returns, not everything: position \(position)")
        await c.close()
        let admin = KafkaAdmin(cluster: cluster(port: b.port))
        let committed = try await admin.groupOffsets("streamer")
        #expect(committed[TopicPartition("stream", 0)] == 5, "close committed the five records handed out, not the batch: \(committed)")
        await b.stop()
    }

    @Test func pipelinedIdempotentAppendsKeepTheirOrderAcrossSegmentRolls() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        var create = CreateTopicsRequest()
        create.topics = [.init(name: "rolling", numPartitions: 1, replicationFactor: 1,
                               configs: [.init(name: "segment.bytes", value: "2048")])]
        _ = try await conn.send(create)
        await conn.close()
        var config = ProducerConfig()
        config.lingerMs = 0
        config.batchSize = 600
        let producer = KafkaProducer(cluster: cluster(port: b.port), config: config)
        for i in 0..<1_500 {
            try await producer.enqueue(topic: "rolling", value: ByteBuffer(string: "\(i)-" + String(repeating: "r", count: 100)), partition: 0)
        }
        try await producer.flush()
        await producer.close()
        let got = try await values(b, "rolling", expect: 1_500).map { Int($0.split(separator: "-")[0])! }
        #expect(got == Array(0..<1_500), "every record once, in order, across \(b.server.broker.logs.log("rolling", 0)?.segmentCount ?? 0) segments")
        #expect((b.server.broker.logs.log("rolling", 0)?.segmentCount ?? 0) > 20)
        await b.stop()
    }
}
