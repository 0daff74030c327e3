import Broker
import Foundation
import KafkaClient
import KafkaProtocol
import Logging
import Mirror
import NIOCore
import NIOPosix
import TestSupport
import Topology

/// The event loop the mirror tests' brokers and clients share: mirror traffic is heavy, and on the
/// shared singleton group it would delay the timers of other suites' brokers.
let mirrorTestLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)

/// Brokers for the mirror tests, on their own event loop.
func regions(_ count: Int, configure: (Int, inout BrokerConfig) -> Void = { _, _ in }) async throws -> [InProcessBroker] {
    try await InProcessBroker.several(count, group: mirrorTestLoops, configure: configure)
}

func cluster(_ b: InProcessBroker) -> KafkaCluster {
    KafkaCluster(bootstrap: [BootstrapAddress(host: "127.0.0.1", port: b.port)], group: mirrorTestLoops)
}

/// Settings with short intervals, so tests see discovery and group sync within a second.
func quickSettings() -> MirrorSettings {
    var s = MirrorSettings()
    s.discoveryInterval = .milliseconds(200)
    s.groupSyncInterval = .milliseconds(300)
    s.configSyncEvery = 2
    s.backoff = .milliseconds(50)
    s.maxBackoff = .milliseconds(500)
    s.fetchMaxWaitMs = 200
    return s
}

/// A flow running in a task of the test process.
final class RunningMirror: Sendable {
    let mirror: FlowMirror
    let task: Task<Void, Never>
    let source: KafkaCluster
    let target: KafkaCluster

    init(_ flow: Topology.Flow, from s: InProcessBroker, to t: InProcessBroker, regions: Set<String> = ["us-east", "eu-west"],
         settings: MirrorSettings = quickSettings()) throws {
        source = cluster(s)
        target = cluster(t)
        var logger = Logger(label: "mirror-test")
        logger.logLevel = ProcessInfo.processInfo.environment["MIRROR_TEST_LOG"] != nil ? .debug : .error
        let m = try FlowMirror(flow: flow, regions: regions, source: source, target: target, settings: settings, logger: logger)
        mirror = m
        task = Task { try? await m.run() }
    }

    func stop() async {
        task.cancel()
        await task.value
        await source.close()
        await target.close()
    }
}

/// Produces `count` keyed records with a header to `topic`, spread over its partitions by key.
func produce(_ b: InProcessBroker, _ topic: TopicName, count: Int, from start: Int = 0, tag: String = "v",
             compression: CompressionCodec = .none) async throws {
    var config = ProducerConfig()
    config.compression = compression
    config.lingerMs = 2
    let c = cluster(b)
    let p = KafkaProducer(cluster: c, config: config)
    for i in start..<(start + count) {
        try await p.enqueue(topic: topic, key: ByteBuffer(string: "key-\(i % 97)"), value: ByteBuffer(string: "\(tag)-\(i)"),
                            headers: [RecordHeader(key: "seq", value: ByteBuffer(string: "\(i)")), RecordHeader(key: "nil", value: nil)])
    }
    try await p.flush()
    await p.close()
    await c.close()
}

/// Every record of a partition from its start to its current end.
func readPartition(_ b: InProcessBroker, _ tp: TopicPartition) async throws -> [ConsumerRecord] {
    let c = cluster(b)
    let admin = KafkaAdmin(cluster: c)
    let end = try await admin.listOffsets([tp], .latest)[tp] ?? 0
    var out: [ConsumerRecord] = []
    if end > 0 {
        let consumer = KafkaConsumer(cluster: c, config: ConsumerConfig())
        consumer.assign([tp])
        consumer.seek(tp, to: .earliest)
        let deadline = ContinuousClock.now + .seconds(60)
        while (out.last?.offset ?? -1) < end - 1 && ContinuousClock.now < deadline {
            out += try await consumer.poll(timeout: .milliseconds(200))
        }
        await consumer.close()
    }
    await c.close()
    return out
}

/// Sum of a topic's partition end offsets (0 when the topic does not exist).
func endOffsets(_ b: InProcessBroker, _ topic: TopicName) async -> [Int32: Int64] {
    let c = cluster(b)
    let admin = KafkaAdmin(cluster: c)
    var out: [Int32: Int64] = [:]
    if let tps = try? await admin.partitions(of: [topic]), let ends = try? await admin.listOffsets(tps, .latest) {
        for (tp, o) in ends { out[tp.partition] = o }
    }
    await c.close()
    return out
}

/// What a consumer sees of a record, for comparing source and target.
struct Seen: Equatable, CustomStringConvertible {
    var key: String?
    var value: String?
    var headers: [String]
    var timestamp: Int64

    init(_ r: ConsumerRecord) {
        key = r.key.map { String(buffer: $0) }
        value = r.value.map { String(buffer: $0) }
        headers = r.headers.map { "\($0.key)=\($0.value.map { String(buffer: $0) } ?? "null")" }
        timestamp = r.timestamp
    }

    var description: String { "\(key ?? "null")/\(value ?? "null")@\(timestamp)" }
}

/// nil when both partitions hold the same records in the same order; else what differs first.
func difference(_ src: [ConsumerRecord], _ dst: [ConsumerRecord]) -> String? {
    for (i, (a, b)) in zip(src, dst).enumerated() where Seen(a) != Seen(b) {
        return "record \(i): source offset \(a.offset) \(Seen(a)) vs target offset \(b.offset) \(Seen(b))"
    }
    if src.count != dst.count { return "source has \(src.count) records, target \(dst.count)" }
    return nil
}
