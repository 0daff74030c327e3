import Broker
import FileLayer
import Foundation
import KafkaProtocol
import KafkaWire
import Logging
import NIOCore
import NIOPosix

/// A broker running inside the test process on an ephemeral loopback port, with its own temporary
/// data directory (removed by ``stop()``). Several can run side by side, one per region.
public final class InProcessBroker: @unchecked Sendable {
    public let dir: String
    public let server: BrokerServer
    public let port: Int
    public let group: EventLoopGroup

    /// "127.0.0.1:PORT", for a client's bootstrap list.
    public var bootstrap: String { "127.0.0.1:\(port)" }

    /// `group`: the event loops the broker serves on; tests that push heavy traffic give their own,
    /// so the timers of other tests' brokers do not queue behind it.
    public init(directory: String? = nil, fs: any FileSystem = PosixFileSystem(), group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                configure: (inout BrokerConfig) -> Void = { _ in }) async throws {
        dir = directory ?? (NSTemporaryDirectory() + "meridian-inproc-\(UUID().uuidString.prefix(8))")
        var config = BrokerConfig(dataDirectory: dir, listeners: [try ListenerAddress(parsing: "PLAINTEXT://127.0.0.1:0")])
        config.threads = 2
        config.groups.offsetsTopicPartitions = 4
        config.groups.group.initialRebalanceDelayMs = 0
        configure(&config)
        var logger = Logger(label: "test-broker")
        logger.logLevel = .error
        self.group = group
        server = BrokerServer(broker: try Broker(config: config, logger: logger, eventLoopGroup: group, fs: fs), group: group)
        port = try await server.start()[0].port
    }

    /// Starts `count` independent brokers (each its own cluster, as regions are); `configure` gets
    /// each broker's index. If one fails to start, those already started are stopped.
    public static func several(_ count: Int, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                               configure: (Int, inout BrokerConfig) -> Void = { _, _ in }) async throws -> [InProcessBroker] {
        var started: [InProcessBroker] = []
        do {
            for i in 0..<count { started.append(try await InProcessBroker(group: group) { configure(i, &$0) }) }
        } catch {
            for b in started { await b.stop() }
            throw error
        }
        return started
    }

    public func connect() async throws -> KafkaConnection {
        try await KafkaConnection.connect(host: "127.0.0.1", port: port, group: group)
    }

    public func stop() async {
        await server.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Sends a raw frame (size prefix included) and returns the response payload after the correlation id.
    public static func rawFrame<R: KafkaRequestMessage>(_ r: R, version: Int16) throws -> ByteBuffer {
        try KafkaConnection.encodeFrame(r, version: version, clientID: "test")
    }
}
