import Foundation
import KafkaProtocol
import KafkaWire
import NIOPosix
import Testing
import TestSupport

@Suite("TCP proxy", .timeLimit(.minutes(2)))
struct ProxySanityTests {
    @Test func forwardsAndCuts() async throws {
        let b = try await InProcessBroker()
        let proxy = try TCPProxy(targetHost: "127.0.0.1", targetPort: b.port)
        let conn = try await KafkaConnection.connect(host: "127.0.0.1", port: proxy.port, group: MultiThreadedEventLoopGroup.singleton,
                                                     requestTimeout: .seconds(5))
        _ = try await conn.send(MetadataRequest(topics: nil))
        #expect(proxy.openConnections == 1)
        proxy.cutAll()
        await #expect(throws: (any Error).self) { _ = try await conn.send(MetadataRequest(topics: nil)) }
        let again = try await KafkaConnection.connect(host: "127.0.0.1", port: proxy.port, group: MultiThreadedEventLoopGroup.singleton)
        _ = try await again.send(MetadataRequest(topics: nil))
        await again.close()
        proxy.close()
        await b.stop()
    }
}
