import Broker
import Foundation
import KafkaClient
import KafkaProtocol
import KafkaWire
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// A broker answers a connection's requests in order, so a Fetch parked in a long poll would hold
/// up everything queued behind it; the client keeps fetches, produces and admin requests apart.
@Suite("Traffic classes", .timeLimit(.minutes(2)))
struct TrafficClassTests {
    @Test func aProduceAndAnOffsetLookupCompleteWhileALongPollFetchIsParkedOnTheSameBroker() async throws {
        let b = try await InProcessBroker()
        defer { Task { await b.stop() } }
        let cluster = KafkaCluster(bootstrap: [BootstrapAddress(host: "127.0.0.1", port: b.port)], group: MultiThreadedEventLoopGroup.singleton)
        let admin = KafkaAdmin(cluster: cluster)
        try await admin.createTopic("idle", partitions: 1)
        try await admin.createTopic("busy", partitions: 1)
        let idle = TopicPartition("idle", 0)

        // A consumer's fetch of an empty partition, parked by the broker for a minute: long enough
        // that "did not wait for it" holds on a slow machine too.
        let leader = try await cluster.topic("idle").partitions[0].leader
        let fetchConn = try await cluster.connection(to: leader, for: .fetch)
        var fetch = FetchRequest()
        fetch.replicaID = -1
        fetch.maxWaitMs = 60_000
        fetch.minBytes = 1
        fetch.maxBytes = 1 << 20
        fetch.topics = [.init(topic: idle.topic, partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)])]
        let parked: EventLoopFuture<FetchResponse> = fetchConn.send(fetch, version: 11, timeout: .seconds(70))

        let producer = KafkaProducer(cluster: cluster)
        let started = ContinuousClock.now
        let sent = try await producer.send(topic: "busy", value: ByteBuffer(string: "not stuck"))
        let offsets = try await admin.listOffsets([TopicPartition("busy", 0)], .latest)
        let elapsed = ContinuousClock.now - started
        #expect(sent.offset == 0 && offsets[TopicPartition("busy", 0)] == 1)
        #expect(elapsed < .seconds(30), "the produce and ListOffsets did not wait for the parked fetch: \(elapsed)")
        #expect(fetchConn !== (try await cluster.connection(to: leader, for: .produce)))
        #expect(fetchConn !== (try await cluster.connection(to: leader, for: .admin)))
        // The fetch is still parked: nothing was written to its partition.
        let stillParked = try await firstOf(seconds: 0.2) { try await parked.get().responses.count }
        #expect(stillParked == nil)
        await producer.close()
        await cluster.close()
    }
}
