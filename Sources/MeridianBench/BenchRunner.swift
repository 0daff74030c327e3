import Foundation
import KafkaClient
import KafkaProtocol
import KafkaWire
import NIOCore
import NIOPosix

/// What one `meridian bench` invocation measures against: the broker, run length, load generator.
public struct BenchSettings: Sendable {
    public var host: String
    public var port: Int
    /// Seconds each measurement runs.
    public var seconds: Double
    /// The broker's pid, for its memory and CPU (found from the port when nil).
    public var brokerPid: Int32?
    /// Measure this machine's raw loopback TCP throughput first, as a yardstick.
    public var measureLoopback: Bool
    /// Drive the broker with hand-built requests instead of the Swift client.
    public var raw: Bool

    public init(host: String, port: Int, seconds: Double, brokerPid: Int32?, measureLoopback: Bool, raw: Bool) {
        self.host = host
        self.port = port
        self.seconds = seconds
        self.brokerPid = brokerPid
        self.measureLoopback = measureLoopback
        self.raw = raw
    }
}

/// A benchmark that cannot run (the broker refused its setup).
public struct BenchError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

/// Shared state of one benchmark invocation: the connection, the yardstick, the output table.
public final class BenchRunner: @unchecked Sendable {
    let common: BenchSettings
    let output: @Sendable (String) -> Void
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let connection: KafkaConnection
    let clientCluster: KafkaCluster
    let brokerPid: Int32?
    var loopback: Double = 0
    let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)

    public init(_ common: BenchSettings, output: @escaping @Sendable (String) -> Void) async throws {
        self.common = common
        self.output = output
        let (host, port) = (common.host, common.port)
        connection = try await KafkaConnection.connect(host: host, port: port, group: group, clientID: "meridian-bench")
        var options = KafkaCluster.Options()
        options.clientID = "meridian-bench"
        clientCluster = KafkaCluster(bootstrap: [BootstrapAddress(host: host, port: port)], options: options, group: group)
        brokerPid = common.brokerPid ?? ProcessStats.pidListening(on: port)
    }

    func say(_ line: String) { output(line) }

    public func close() async {
        await clientCluster.close()
        await connection.close()
        try? await group.shutdownGracefully()
    }

    public func header() async throws {
        say("meridian bench (\(common.raw ? "raw requests" : "Swift client") as load generator): broker \(common.host):\(common.port)\(brokerPid.map { " (pid \($0))" } ?? " (pid unknown: memory not reported)"), \(System.coreCount) cores, \(Int(common.seconds)) s per run")
        if let pid = brokerPid, let dir = StorageProbe.dataDirectory(pid: pid) {
            let fsync = StorageProbe.fsyncMillis(in: dir).map { String(format: "%.2f ms", $0) } ?? "not measurable"
            say("broker data directory \(dir) on \(StorageProbe.fileSystemType(dir)); one 4 KiB write + fsync: \(fsync)")
        }
        if common.measureLoopback {
            loopback = LoopbackPump.measure(seconds: 2)
            say(String(format: "loopback TCP, plain socket pump: %.0f MB/s", loopback / 1_000_000))
        }
        say("")
        say(pad("run", 36) + pad("MB/s", 9, right: true) + pad("records/s", 12, right: true) + pad("p50 ms", 9, right: true)
            + pad("p99 ms", 9, right: true) + pad("loopback", 10, right: true) + pad("broker CPU", 12, right: true))
    }

    public func footer() {
        say("")
        if let pid = brokerPid, let rss = ProcessStats.rss(pid: pid) {
            say("broker memory: peak RSS \(formatBytes(Double(rss.peak))), now \(formatBytes(Double(rss.current)))")
        }
        if let rss = ProcessStats.rss(pid: getpid()) {
            say("load generator memory: peak RSS \(formatBytes(Double(rss.peak))), now \(formatBytes(Double(rss.current)))")
        }
    }

    private func pad(_ s: String, _ n: Int, right: Bool = false) -> String {
        s.count >= n ? s + " " : (right ? String(repeating: " ", count: n - s.count) + s : s + String(repeating: " ", count: n - s.count))
    }

    private func row(_ name: String, mb: Double, records: Double, p50: Double?, p99: Double?, cpu: Double?) {
        let ratio = loopback > 0 ? String(format: "%.1f%%", mb * 1_000_000 / loopback * 100) : "-"
        say(pad(name, 36) + pad(String(format: "%.1f", mb), 9, right: true) + pad(String(format: "%.0f", records), 12, right: true)
            + pad(p50.map { String(format: "%.2f", $0) } ?? "-", 9, right: true) + pad(p99.map { String(format: "%.2f", $0) } ?? "-", 9, right: true)
            + pad(ratio, 10, right: true) + pad(cpu.map { String(format: "%.0f%%", $0 * 100) } ?? "-", 12, right: true))
    }

    /// Creates a fresh topic for one run.
    func createTopic(_ name: TopicName, partitions: Int32) async throws {
        var req = CreateTopicsRequest()
        req.timeoutMs = 30_000
        req.topics = [.init(name: name, numPartitions: partitions, replicationFactor: 1)]
        let r = try await connection.send(req)
        let code = r.topics.first?.errorCode ?? .none
        guard code == .none || code == .topicAlreadyExists else {
            throw BenchError("cannot create benchmark topic \(name): \(code) \(r.topics.first?.errorMessage ?? "")")
        }
    }

    private func cpu() -> Double? { brokerPid.flatMap { ProcessStats.cpuSeconds(pid: $0) } }

    public func produce(recordSize: Int, acks: Int16, partitions: Int32, requestBytes: Int, inFlight: Int) async throws {
        let topic = TopicName("bench-\(runID)-p\(partitions)-s\(recordSize)-a\(acks == -1 ? "all" : String(acks))")
        try await createTopic(topic, partitions: partitions)
        let cpu0 = cpu()
        let r: ProduceLoad.Result
        if common.raw {
            r = try await ProduceLoad(connection: connection, topic: topic, partitions: partitions, recordSize: recordSize,
                                      acks: acks, bytesPerRequest: requestBytes, inFlight: inFlight, duration: common.seconds).run().get()
        } else {
            r = try await clientProduce(topic: topic, recordSize: recordSize, acks: acks, seconds: common.seconds)
        }
        let cpuUse = cpu().flatMap { c1 in cpu0.map { (c1 - $0) / r.seconds } }
        let sizeName = recordSize >= 1024 && recordSize % 1024 == 0 ? "\(recordSize / 1024) KiB" : "\(recordSize) B"
        row("produce \(sizeName) acks=\(acks == -1 ? "all" : "1") \(partitions)p", mb: r.mbPerSecond, records: r.recordsPerSecond,
            p50: r.percentile(0.5), p99: r.percentile(0.99), cpu: cpuUse)
        if !r.errors.isEmpty { say("  errors: \(r.errors.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))") }
    }

    public func fetch(partitions: Int32, fillBytes: Int64, partitionMaxBytes: Int32) async throws {
        let topic = TopicName("bench-\(runID)-fetch-p\(partitions)")
        try await createTopic(topic, partitions: partitions)
        let fillSeconds = max(1.0, Double(fillBytes) / 150_000_000)
        say("  (filling \(topic) with about \(formatBytes(Double(fillBytes))) first)")
        var written: Int64 = 0
        let started = Date()
        while written < fillBytes && Date().timeIntervalSince(started) < fillSeconds * 4 {
            let chunk = try ProduceLoad(connection: connection, topic: topic, partitions: partitions, recordSize: 1024, acks: 1,
                                        bytesPerRequest: 1 << 20, inFlight: 8, duration: 1)
            written += try await chunk.run().get().bytes
        }
        let cpu0 = cpu()
        let r: FetchLoad.Result
        if common.raw {
            r = try await FetchLoad(connection: connection, topic: topic, partitions: partitions,
                                    partitionMaxBytes: partitionMaxBytes, duration: common.seconds).run().get()
        } else {
            r = try await clientConsume(topic: topic, partitions: partitions, partitionMaxBytes: partitionMaxBytes, seconds: common.seconds)
        }
        let cpuUse = cpu().flatMap { c1 in cpu0.map { (c1 - $0) / r.seconds } }
        row("\(common.raw ? "fetch" : "consume") 1 KiB records \(partitions)p", mb: r.mbPerSecond, records: r.recordsPerSecond, p50: nil, p99: nil, cpu: cpuUse)
    }

    /// Produce-to-consume latency: records at a steady rate, each carrying its send time, read by
    /// a long-polling consumer; what a record waits for the group-committed flush shows here.
    public func endToEnd(recordSize: Int, acks: Int16, recordsPerSecond: Int) async throws {
        let topic = TopicName("bench-\(runID)-e2e-a\(acks == -1 ? "all" : "1")")
        try await createTopic(topic, partitions: 1)
        let r = try await clientEndToEnd(topic: topic, recordSize: recordSize, acks: acks, recordsPerSecond: recordsPerSecond,
                                         seconds: common.seconds)
        let sizeName = recordSize >= 1024 && recordSize % 1024 == 0 ? "\(recordSize / 1024) KiB" : "\(recordSize) B"
        row("produce→consume \(sizeName) acks=\(acks == -1 ? "all" : "1") 1p", mb: r.mbPerSecond, records: r.recordsPerSecond,
            p50: r.percentile(0.5), p99: r.percentile(0.99), cpu: nil)
    }

    public func idlePartitionsMemory(count: Int32) async throws {
        guard let pid = brokerPid else { return }
        let topic = TopicName("bench-\(runID)-idle-\(count)")
        try await createTopic(topic, partitions: count)
        try await Task.sleep(for: .seconds(1))
        if let rss = ProcessStats.rss(pid: pid) {
            say("broker RSS after creating an idle \(count)-partition topic: \(formatBytes(Double(rss.current))) now, peak \(formatBytes(Double(rss.peak)))")
        }
    }
}
