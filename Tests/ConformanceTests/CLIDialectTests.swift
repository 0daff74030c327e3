import Foundation
import KafkaProtocol
import KafkaWire
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// The CLI speaks kcat's and Kafka's dialect: -b/--bootstrap-server, -t/-p/-o/-e/-G/-K/-c,
/// -X with librdkafka/Java property names, and a broker started from a stock server.properties.
@Suite("CLI in Kafka's dialect", .timeLimit(.minutes(3)))
struct CLIDialectTests {
    let m = BrokerProcess.binary

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func produceAndConsumeTakeKcatFlagsAndClientProperties() async throws {
        let broker = try await BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        let b = broker.bootstrap
        let produced = try await runProcess(m, ["produce", "-b", b, "-t", "orders", "-K", ":", "-X", "acks=all", "-X", "compression.type=gzip",
                                                "-X", "linger.ms=1", "-X", "no.such.property=1"],
                                            input: Data("k1:v1\nk2:v2\nk3:v3\n".utf8))
        #expect(produced.status == 0, "\(produced.stderr)")
        #expect(produced.stderr.contains("ignoring -X properties this command does not use: no.such.property"), "\(produced.stderr)")

        // The batch on the broker is gzip-compressed and idempotent, as -X asked.
        let conn = try await KafkaConnection.connect(host: "127.0.0.1", port: broker.port, group: MultiThreadedEventLoopGroup.singleton)
        var fetch = FetchRequest()
        fetch.replicaID = -1
        fetch.maxBytes = 1 << 20
        fetch.topics = [.init(topic: "orders", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)])]
        let resp = try await conn.send(fetch, version: 11)
        await conn.close()
        guard case .bytes(let bytes)? = resp.responses.first?.partitions.first?.records else {
            Issue.record("no batch fetched: \(resp)")
            return
        }
        // How the three lines are batched depends on how fast they arrive; every batch is gzip and idempotent.
        let headers = RecordBatch.batches(in: bytes).map(\.header)
        #expect(!headers.isEmpty && headers.allSatisfy { $0.compression == .gzip && $0.producerID >= 0 })
        #expect(headers.reduce(0) { $0 + $1.recordsCount } == 3)

        // kcat's consumer flags.
        let all = try await runProcess(m, ["consume", "-b", b, "-t", "orders", "-o", "beginning", "-e"])
        #expect(all.status == 0 && all.stdout == "v1\nv2\nv3\n", "\(all.stderr)")
        let lastTwo = try await runProcess(m, ["consume", "--bootstrap-server", b, "-t", "orders", "-o", "-2", "-e", "-K", "="])
        #expect(lastTwo.stdout == "k2=v2\nk3=v3\n", "\(lastTwo.stderr)")
        let counted = try await runProcess(m, ["consume", "-b", b, "-t", "orders", "-p", "0", "-o", "1", "-c", "1"])
        #expect(counted.stdout == "v2\n", "\(counted.stderr)")
        // A group: -G, then -o stored resumes where the group committed.
        let first = try await runProcess(m, ["consume", "-b", b, "-t", "orders", "-G", "dialect", "-o", "beginning", "-c", "2",
                                             "-X", "auto.commit.interval.ms=100"])
        #expect(first.stdout == "v1\nv2\n", "\(first.stderr)")
        let rest = try await runProcess(m, ["consume", "-b", b, "-t", "orders", "-G", "dialect", "-o", "stored", "-e"])
        #expect(rest.stdout == "v3\n", "the group resumes after what it committed: \(rest.stderr)")
        // kcat itself reads what meridian wrote.
        let k = try await runProcess(try ExternalTools.require(ExternalTools.kcat, "kcat"),
                                     ["-b", b, "-C", "-t", "orders", "-o", "beginning", "-e", "-q", "-f", "%k=%s\\n"], timeout: 60)
        #expect(k.stdout == "k1=v1\nk2=v2\nk3=v3\n")
        // --format json is the one JSON switch (the old --json still works).
        let topics = try await runProcess(m, ["topics", "list", "-b", b, "--format", "json"])
        #expect(topics.stdout.contains("\"topic\":\"orders\""), "\(topics.stdout)")
        let groups = try await runProcess(m, ["groups", "list", "-b", b, "--json"])
        #expect(groups.stdout.contains("\"group\":\"dialect\""), "\(groups.stdout)")
    }

    @Test func aSASLSecurityProtocolIsRefusedWithAClearMessage() async throws {
        let broker = try await BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        let r = try await runProcess(m, ["topics", "list", "-b", broker.bootstrap, "-X", "security.protocol=SASL_SSL"])
        #expect(r.status != 0 && r.stderr.contains("SASL is not supported"), "\(r.stderr)")
    }

    @Test func theBrokerStartsFromAStockKafkaServerPropertiesFile() async throws {
        let dir = NSTemporaryDirectory() + "meridian-props-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = try freePort(), controllerPort = try freePort()
        // Apache Kafka's config/kraft/server.properties, with ports and paths of this test.
        let file = """
            # Licensed to the Apache Software Foundation (ASF) under one or more
            ############################# Server Basics #############################
            process.roles=broker,controller
            node.id=7
            controller.quorum.voters=7@localhost:\(controllerPort)
            ############################# Socket Server Settings #############################
            listeners=PLAINTEXT://:\(port),CONTROLLER://:\(controllerPort)
            inter.broker.listener.name=PLAINTEXT
            advertised.listeners=PLAINTEXT://127.0.0.1:\(port)
            controller.listener.names=CONTROLLER
            listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
            num.network.threads=3
            num.io.threads=8
            socket.send.buffer.bytes=102400
            socket.receive.buffer.bytes=102400
            socket.request.max.bytes=104857600
            ############################# Log Basics #############################
            log.dirs=\(dir)/kraft-combined-logs
            num.partitions=1
            num.recovery.threads.per.data.dir=1
            offsets.topic.replication.factor=1
            transaction.state.log.replication.factor=1
            transaction.state.log.min.isr=1
            log.retention.hours=168
            log.segment.bytes=1073741824
            log.retention.check.interval.ms=300000
            """
        try file.write(toFile: dir + "/server.properties", atomically: true, encoding: .utf8)
        let out = dir + "/broker.out"
        let shell = "exec '\(m)' broker --config-file '\(dir)/server.properties' --set num.partitions=3 2>&1"
        let broker = try SpawnedProcess("/bin/sh", ["-c", shell], stdoutPath: out)
        defer { broker.stop() }
        func output() -> String { (try? String(contentsOfFile: out, encoding: .utf8)) ?? "" }
        let deadline = Date().addingTimeInterval(30)
        while !output().contains("ready ") && Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(output().contains("ready PLAINTEXT://0.0.0.0:\(port)"), "\(output())")
        #expect(FileManager.default.fileExists(atPath: dir + "/kraft-combined-logs"), "log.dirs is the data directory")

        // --set wins over the file; the topic auto-created by a producer gets 3 partitions.
        let b = "127.0.0.1:\(port)"
        #expect(try await runProcess(m, ["produce", "-b", b, "-t", "auto"], input: Data("x\n".utf8)).status == 0)
        let described = try await runProcess(m, ["topics", "describe", "auto", "-b", b, "--format", "json", "--all-configs"])
        #expect(described.stdout.contains("\"partitions\":[{") && described.stdout.components(separatedBy: "\"partition\":").count - 1 == 3,
                "\(described.stdout)")
        #expect(described.stdout.contains("\"retention.ms\":\"604800000\""), "log.retention.hours=168 is the topics' default")
        #expect(described.stdout.contains("\"leader\":7"), "node.id")
        // What it does not use is reported once, by name, and is not fatal.
        let notices = output().components(separatedBy: "\n").filter { $0.contains("ignoring broker properties") }
        #expect(notices.count == 1, "\(output())")
        for p in ["process.roles", "controller.quorum.voters", "num.network.threads", "offsets.topic.replication.factor"] {
            #expect(notices.first?.contains(p) == true, "\(p) is reported as ignored")
        }
        for p in ["log.dirs", "listeners", "num.partitions", "log.retention.hours", "node.id"] {
            #expect(notices.first?.contains(p + ",") != true && notices.first?.hasSuffix(p) != true, "\(p) is used")
        }
    }
}
