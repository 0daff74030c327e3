import ArgumentParser
import Foundation
import MeridianBench

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
              meridian bench mirror --data-dir /var/tmp --seconds 10
            """,
        subcommands: [Produce.self, Fetch.self, Group.self, Commits.self, Idle.self, All.self, Mirror.self]
    )

    struct Common: ParsableArguments {
        @Option(name: [.customShort("b"), .customLong("bootstrap-server"), .customLong("bootstrap")],
                help: "Broker address HOST:PORT (plaintext listener).")
        var bootstrap: String = "127.0.0.1:9092"

        @Option(help: "Seconds each measurement runs.")
        var seconds: Double = 10

        @Option(help: "Pid of the broker, for its memory figures (default: found from the port).")
        var brokerPid: Int32?

        @Flag(help: "Skip the loopback TCP measurement.")
        var noLoopback = false

        @Flag(help: "Drive the broker with hand-built requests instead of the Swift client (measures the broker alone).")
        var raw = false

        var settings: BenchSettings {
            get throws {
                let parts = bootstrap.split(separator: ":")
                guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("--bootstrap must be HOST:PORT") }
                return BenchSettings(host: String(parts[0]), port: port, seconds: seconds, brokerPid: brokerPid,
                                     measureLoopback: !noLoopback, raw: raw)
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
            let bench = try await BenchRunner(common.settings, output: say)
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
            let bench = try await BenchRunner(common.settings, output: say)
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
            let bench = try await BenchRunner(c.settings, output: say)
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
            let bench = try await BenchRunner(c.settings, output: say)
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
            let bench = try await BenchRunner(c.settings, output: say)
            try await bench.idlePartitionsMemory(count: partitions)
            await bench.close()
        }
    }

    struct Mirror: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Mirror throughput against broker produce throughput, with and without WAN latency (starts its own brokers).",
            discussion: """
                Starts three broker processes (a target, a source, and a source reached through a proxy
                that adds latency), fills each source for --seconds, and times `meridian mirror` copying
                it into the target. Prints the target broker's own produce rate (acks=all), the mirror's
                rate without and with the round trip, and the mirror's peak RSS against its budget.
                Give --data-dir on a real disk (not tmpfs); the data is removed afterwards.
                """)
        @Option(help: "Seconds each source is filled; the broker produce measurement then writes as many bytes as the first source got.") var seconds: Double = 10
        @Option(help: "Partitions of the mirrored topics.") var partitions: Int32 = 4
        @Option(help: "Bytes per record value.") var recordSize: Int = 1024
        @Option(help: "Round trip added between the mirror and the second source, ms.") var latencyMs: Int = 50
        @Option(help: "Where the brokers keep their data (a real disk).") var dataDir: String = "."
        @Flag(help: "Keep the brokers' data and logs.") var keepData = false
        @Option(help: .hidden) var mirrorArgument: [String] = []

        func run() async throws {
            var b = MirrorBench(seconds: seconds, partitions: partitions, recordSize: recordSize, roundTripMs: latencyMs,
                                dataDir: dataDir, keepData: keepData)
            b.mirrorArguments = mirrorArgument
            try await b.run(output: say)
        }
    }

    struct All: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The whole matrix: 1 KiB and 100 B records, acks 1 and -1, 1 and 8 partitions; fetch; produce-to-consume latency; idle memory.")
        @OptionGroup var common: Common

        func run() async throws {
            let bench = try await BenchRunner(common.settings, output: say)
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
