import ArgumentParser
import KafkaClient
import Foundation
import KafkaProtocol
import KafkaWire
import NIOCore
import NIOPosix

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure a running broker: produce and fetch throughput, latency, memory.",
        discussion: """
            Every run also measures this machine's raw loopback TCP throughput with a plain socket
            pump and reports Meridian's throughput as a share of it, and reads the broker's resident
            memory from /proc (the broker is found by its listening port, or give --broker-pid).

            Examples:
              meridian bench all --bootstrap 127.0.0.1:9092
              meridian bench produce --bootstrap 127.0.0.1:9092 --record-size 100 --acks -1 --partitions 8
              meridian bench fetch --bootstrap 127.0.0.1:9092 --partitions 1 --seconds 20
            """,
        subcommands: [Produce.self, Fetch.self, Group.self, Commits.self, Idle.self, All.self]
    )

    struct Common: ParsableArguments {
        @Option(help: "Broker address HOST:PORT (plaintext listener).")
        var bootstrap: String = "127.0.0.1:9092"

        @Option(help: "Seconds each measurement runs.")
        var seconds: Double = 10

        @Option(help: "Pid of the broker, for its memory figures (default: found from the port).")
        var brokerPid: Int32?

        @Flag(help: "Skip the loopback TCP measurement.")
        var noLoopback = false

        @Flag(help: "Drive the broker with hand-built requests instead of the Swift client (measures the broker alone).")
        var raw = false

        var hostPort: (String, Int) {
            get throws {
                let parts = bootstrap.split(separator: ":")
                guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("--bootstrap must be HOST:PORT") }
                return (String(parts[0]), port)
            }
        }
    }

    struct Produce: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Produce as fast as the broker accepts.")
        @OptionGroup var common: Common
        @Option(help: "Bytes per record value.") var recordSize: Int = 1024
        @Option(help: "acks: 1 or -1 (all).") var acks: Int16 = 1
        @Option(help: "Partitions of the benchmark topic.") var partitions: Int32 = 8
        @Option(help: "Record bytes per produce request (split over the partitions).") var requestBytes: Int = 1 << 20
        @Option(help: "Produce requests in flight.") var inFlight: Int = 8

        func run() async throws {
            let bench = try await BenchRunner(common)
            try await bench.header()
            try await bench.produce(recordSize: recordSize, acks: acks, partitions: partitions,
                                    requestBytes: requestBytes, inFlight: inFlight)
            bench.footer()
            await bench.close()
        }
    }

    struct Fetch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Read a topic end to end repeatedly.")
        @OptionGroup var common: Common
        @Option(help: "Partitions of the benchmark topic.") var partitions: Int32 = 8
        @Option(help: "Bytes to write into the topic first (if it holds less).") var fillBytes: Int64 = 1 << 30
        @Option(help: "max.partition.fetch.bytes of each fetch.") var partitionMaxBytes: Int32 = 1 << 20

        func run() async throws {
            let bench = try await BenchRunner(common)
            try await bench.header()
            try await bench.fetch(partitions: partitions, fillBytes: fillBytes, partitionMaxBytes: partitionMaxBytes)
            bench.footer()
            await bench.close()
        }
    }

    struct Group: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "N consumers in one group read a topic; then one leaves and the rebalance is timed.")
        @OptionGroup var common: Common
        @Option(help: "Consumers in the group.") var consumers: Int = 3
        @Option(help: "Partitions of the topic.") var partitions: Int32 = 6
        @Option(help: "Bytes written into the topic first.") var fillBytes: Int64 = 256 << 20
        @Option(help: "Heartbeat interval of the bench consumers, ms.") var heartbeatMs: Int64 = 100

        func run() async throws {
            var c = common
            c.noLoopback = true
            let bench = try await BenchRunner(c)
            try await bench.groupConsume(consumers: consumers, partitions: partitions, fillBytes: fillBytes, heartbeatMs: heartbeatMs)
            bench.footer()
            await bench.close()
        }
    }

    struct Commits: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Offset commit throughput (each commit is fsynced).")
        @OptionGroup var common: Common
        @Option(help: "Commits in flight.") var inFlight: Int = 64
        @Option(help: "Distinct groups committing.") var groups: Int = 100

        func run() async throws {
            var c = common
            c.noLoopback = true
            let bench = try await BenchRunner(c)
            try await bench.commits(inFlight: inFlight, groups: groups)
            bench.footer()
            await bench.close()
        }
    }

    struct Idle: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an idle topic with many partitions and report the broker's memory (run on a fresh broker).")
        @OptionGroup var common: Common
        @Option(help: "Partitions of the idle topic.") var partitions: Int32 = 100

        func run() async throws {
            var c = common
            c.noLoopback = true
            let bench = try await BenchRunner(c)
            try await bench.idlePartitionsMemory(count: partitions)
            await bench.close()
        }
    }

    struct All: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The whole matrix: 1 KiB and 100 B records, acks 1 and -1, 1 and 8 partitions; fetch; produce-to-consume latency; idle memory.")
        @OptionGroup var common: Common

        func run() async throws {
            let bench = try await BenchRunner(common)
            try await bench.header()
            for size in [1024, 100] {
                for acks: Int16 in [1, -1] {
                    for partitions: Int32 in [1, 8] {
                        try await bench.produce(recordSize: size, acks: acks, partitions: partitions, requestBytes: 1 << 20, inFlight: 8)
                    }
                }
            }
            for partitions: Int32 in [1, 8] {
                try await bench.fetch(partitions: partitions, fillBytes: 1 << 30, partitionMaxBytes: 1 << 20)
            }
            for acks: Int16 in [1, -1] {
                try await bench.endToEnd(recordSize: 1024, acks: acks, recordsPerSecond: 2_000)
            }
            try await bench.idlePartitionsMemory(count: 100)
            bench.footer()
            await bench.close()
        }
    }
}

/// Shared state of one benchmark invocation: the connection, the yardstick, the output table.
final class BenchRunner: @unchecked Sendable {
    let common: BenchCommand.Common
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let connection: KafkaConnection
    let clientCluster: KafkaCluster
    let brokerPid: Int32?
    var loopback: Double = 0
    let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)

    init(_ common: BenchCommand.Common) async throws {
        self.common = common
        let (host, port) = try common.hostPort
        connection = try await KafkaConnection.connect(host: host, port: port, group: group, clientID: "meridian-bench")
        var options = KafkaCluster.Options()
        options.clientID = "meridian-bench"
        clientCluster = KafkaCluster(bootstrap: [BootstrapAddress(host: host, port: port)], options: options, group: group)
        brokerPid = common.brokerPid ?? ProcessStats.pidListening(on: port)
    }

    func close() async {
        await clientCluster.close()
        await connection.close()
        try? await group.shutdownGracefully()
    }

    func header() async throws {
        say("meridian bench (\(common.raw ? "raw requests" : "Swift client") as load generator): broker \(common.bootstrap)\(brokerPid.map { " (pid \($0))" } ?? " (pid unknown: memory not reported)"), \(System.coreCount) cores, \(Int(common.seconds)) s per run")
        if let pid = brokerPid, let dir = StorageProbe.dataDirectory(pid: pid) {
            let fsync = StorageProbe.fsyncMillis(in: dir).map { String(format: "%.2f ms", $0) } ?? "not measurable"
            say("broker data directory \(dir) on \(StorageProbe.fileSystemType(dir)); one 4 KiB write + fsync: \(fsync)")
        }
        if !common.noLoopback {
            loopback = LoopbackPump.measure(seconds: 2)
            say(String(format: "loopback TCP, plain socket pump: %.0f MB/s", loopback / 1_000_000))
        }
        say("")
        say(pad("run", 36) + pad("MB/s", 9, right: true) + pad("records/s", 12, right: true) + pad("p50 ms", 9, right: true)
            + pad("p99 ms", 9, right: true) + pad("loopback", 10, right: true) + pad("broker CPU", 12, right: true))
    }

    func footer() {
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
            throw ValidationError("cannot create benchmark topic \(name): \(code) \(r.topics.first?.errorMessage ?? "")")
        }
    }

    private func cpu() -> Double? { brokerPid.flatMap { ProcessStats.cpuSeconds(pid: $0) } }

    func produce(recordSize: Int, acks: Int16, partitions: Int32, requestBytes: Int, inFlight: Int) async throws {
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

    func fetch(partitions: Int32, fillBytes: Int64, partitionMaxBytes: Int32) async throws {
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
    func endToEnd(recordSize: Int, acks: Int16, recordsPerSecond: Int) async throws {
        let topic = TopicName("bench-\(runID)-e2e-a\(acks == -1 ? "all" : "1")")
        try await createTopic(topic, partitions: 1)
        let r = try await clientEndToEnd(topic: topic, recordSize: recordSize, acks: acks, recordsPerSecond: recordsPerSecond,
                                         seconds: common.seconds)
        let sizeName = recordSize >= 1024 && recordSize % 1024 == 0 ? "\(recordSize / 1024) KiB" : "\(recordSize) B"
        row("produce→consume \(sizeName) acks=\(acks == -1 ? "all" : "1") 1p", mb: r.mbPerSecond, records: r.recordsPerSecond,
            p50: r.percentile(0.5), p99: r.percentile(0.99), cpu: nil)
    }

    func idlePartitionsMemory(count: Int32) async throws {
        guard let pid = brokerPid else { return }
        let topic = TopicName("bench-\(runID)-idle-\(count)")
        try await createTopic(topic, partitions: count)
        try await Task.sleep(for: .seconds(1))
        if let rss = ProcessStats.rss(pid: pid) {
            say("broker RSS after creating an idle \(count)-partition topic: \(formatBytes(Double(rss.current))) now, peak \(formatBytes(Double(rss.peak)))")
        }
    }
}
