import KafkaClient
import KafkaProtocol
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// The test support's in-process brokers, as the mirror's tests will use them: one per region.
@Suite("In-process brokers", .timeLimit(.minutes(1)))
struct InProcessBrokerTests {
    @Test func severalBrokersRunSideBySideAsSeparateClusters() async throws {
        let brokers = try await InProcessBroker.several(2) { i, config in config.brokerID = Int32(i + 1) }
        defer { Task { for b in brokers { await b.stop() } } }
        #expect(brokers[0].port != brokers[1].port && brokers[0].dir != brokers[1].dir)
        let clusters = brokers.map {
            KafkaCluster(bootstrap: [try! BootstrapAddress.parseList($0.bootstrap)[0]], group: MultiThreadedEventLoopGroup.singleton)
        }
        try await KafkaAdmin(cluster: clusters[0]).createTopic("only-in-first", partitions: 1)
        let first = try await KafkaAdmin(cluster: clusters[0]).listTopics().map(\.name)
        let second = try await KafkaAdmin(cluster: clusters[1]).listTopics().map(\.name)
        #expect(first.contains("only-in-first") && !second.contains("only-in-first"))
        _ = try await clusters[0].refreshMetadata(topics: [])
        _ = try await clusters[1].refreshMetadata(topics: [])
        #expect(clusters[0].clusterID != clusters[1].clusterID)
        #expect(clusters.map { $0.knownBrokers.first?.id.rawValue } == [1, 2])
        for c in clusters { await c.close() }
    }
}
