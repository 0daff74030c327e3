import Foundation
import Testing
import TestSupport

/// A Kafka implementation nobody here wrote: librdkafka's mock cluster, on the other side of the
/// client and of the mirror. It answers our ApiVersions v4 with UNSUPPORTED_VERSION in the flexible
/// shape (the client used to fail decoding it and gave up) and serves fewer APIs than Kafka.
@Suite("librdkafka's mock cluster", .timeLimit(.minutes(4)),
       .enabled(if: ExternalTools.shouldRun(ExternalTools.python) && ExternalTools.shouldRun(ExternalTools.kcat)))
struct MockClusterTests {
    func meridian(_ args: [String], input: String? = nil) async throws -> ProcessResult {
        try await runProcess(BrokerProcess.binary, args, input: input.map { Data($0.utf8) }, timeout: 60)
    }

    func dump(_ bootstrap: String, _ topic: String) async throws -> [String] {
        let kcat = try ExternalTools.require(ExternalTools.kcat, "kcat")
        let r = try await runProcess(kcat, ["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %o %k %s\\n"])
        return r.stdout.split(separator: "\n").map(String.init).sorted()
    }

    @Test func theCLITalksToIt() async throws {
        let mock = try await MockKafkaCluster(brokers: 2)
        defer { mock.stop() }
        let produced = try await meridian(["produce", "-b", mock.firstBroker, "-t", "cli"], input: (0..<50).map { "line-\($0)" }.joined(separator: "\n") + "\n")
        #expect(produced.status == 0, "\(produced.stderr)")
        let list = try await meridian(["topics", "list", "-b", mock.firstBroker])
        #expect(list.status == 0 && list.stdout.contains("cli"), "\(list.stdout)\(list.stderr)")
        let described = try await meridian(["topics", "describe", "cli", "-b", mock.firstBroker])
        #expect(described.status == 0 && described.stdout.contains("partitions 4"), "\(described.stdout)\(described.stderr)")
        #expect(described.stderr.contains("does not serve DescribeConfigs"), "said, not an error: \(described.stderr)")
        let consumed = try await meridian(["consume", "-b", mock.firstBroker, "-t", "cli", "-o", "beginning", "-e"])
        #expect(consumed.status == 0, "\(consumed.stderr)")
        #expect(Set(consumed.stdout.split(separator: "\n").map(String.init)) == Set((0..<50).map { "line-\($0)" }))
    }

    @Test func theMirrorCopiesATopicFromItExactly() async throws {
        let mock = try await MockKafkaCluster(brokers: 3, topic: "orders", records: 20_000)
        defer { mock.stop() }
        let local = try await BrokerProcess()
        defer { local.terminate(); local.removeData() }
        let dir = NSTemporaryDirectory() + "meridian-mockmirror-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let mockBrokers = mock.bootstrap.split(separator: ",").map { "\"\($0)\"" }.joined(separator: ", ")
        try """
            {"version": 1,
             "regions": [{"name": "mock", "bootstrap": [\(mockBrokers)]},
                         {"name": "local", "bootstrap": ["\(local.bootstrap)"]}],
             "flows": [{"name": "mock-to-local", "source": "mock", "target": "local", "topics": {"include": ["orders"]}}]}
            """.write(toFile: dir + "/topology.json", atomically: true, encoding: .utf8)
        let source = try await dump(mock.firstBroker, "orders")
        try #require(source.count == 20_000, "the mock holds the records")
        #expect(Set(source.map { $0.split(separator: " ")[0] }) == ["0", "1", "2", "3"], "in 4 partitions")
        let mirror = try SpawnedProcess(BrokerProcess.binary, ["mirror", "--topology", dir + "/topology.json", "--region", "local"],
                                        stdoutPath: dir + "/mirror.out", stderrPath: dir + "/mirror.log")
        let copied = await eventually(90) { (try? await dump(local.bootstrap, "mock.orders").count) == 20_000 }
        let log = (try? String(contentsOfFile: dir + "/mirror.log", encoding: .utf8)) ?? ""
        #expect(copied, "mirror log:\n\(log.suffix(3_000))")
        #expect(try await dump(local.bootstrap, "mock.orders") == source, "every record once, at its partition and offset")
        // What the mock does not serve is said once, not every round.
        #expect(log.components(separatedBy: "does not serve DescribeConfigs").count == 2, "\(log.suffix(3_000))")
        #expect(mirror.stop(SIGTERM) == 0)
    }
}
