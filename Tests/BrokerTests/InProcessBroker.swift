import Broker
import FileLayer
import Foundation
import KafkaProtocol
import KafkaWire
import Logging
import NIOCore
import NIOPosix

/// A broker running inside the test process on an ephemeral port, with a connected client.
final class InProcessBroker: @unchecked Sendable {
    let dir: String
    let server: BrokerServer
    let port: Int
    let group: EventLoopGroup

    init(directory: String? = nil, fs: any FileSystem = PosixFileSystem(),
         configure: (inout BrokerConfig) -> Void = { _ in }) async throws {
        dir = directory ?? (NSTemporaryDirectory() + "meridian-inproc-\(UUID().uuidString.prefix(8))")
        var config = BrokerConfig(dataDirectory: dir, listeners: [try ListenerAddress(parsing: "PLAINTEXT://127.0.0.1:0")])
        config.threads = 2
        config.groups.offsetsTopicPartitions = 4
        config.groups.group.initialRebalanceDelayMs = 0
        configure(&config)
        var logger = Logger(label: "test-broker")
        logger.logLevel = .error
        group = MultiThreadedEventLoopGroup.singleton
        server = BrokerServer(broker: try Broker(config: config, logger: logger, eventLoopGroup: group, fs: fs), group: group)
        port = try await server.start()[0].port
    }

    func connect() async throws -> KafkaConnection {
        try await KafkaConnection.connect(host: "127.0.0.1", port: port, group: group)
    }

    func stop() async {
        await server.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Sends a raw frame (size prefix included) and returns the response payload after the correlation id.
    static func rawFrame<R: KafkaRequestMessage>(_ r: R, version: Int16) throws -> ByteBuffer {
        try KafkaConnection.encodeFrame(r, version: version, clientID: "test")
    }
}

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
