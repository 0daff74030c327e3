import Foundation

/// librdkafka's mock cluster — a second Kafka implementation, which serves ApiVersions v0–2, no
/// CreateTopics, DescribeConfigs or ListGroups, and reports a controller that is not one of its
/// brokers — started from the test venv's confluent-kafka in a child process (which dies with the
/// test process), optionally holding `records` keyed records in `topic` (4 partitions).
public final class MockKafkaCluster: @unchecked Sendable {
    public let bootstrap: String
    private let process: ChildProcess
    private let out: String

    public init(brokers: Int = 3, topic: String? = nil, records: Int = 0) async throws {
        let python = try ExternalTools.require(ExternalTools.python, "python venv with confluent-kafka")
        let script = ExternalTools.packageRoot.appendingPathComponent("Tests/ConformanceTests/python/mock_cluster.py").path
        out = NSTemporaryDirectory() + "mock-cluster-\(UUID().uuidString.prefix(8))"
        process = ChildProcess(python, [script, "\(brokers)"] + (topic.map { [$0, "\(records)"] } ?? []))
        process.standardOutput = .file(out)
        process.standardError = .file(out + ".log")
        try process.run()
        let deadline = ContinuousClock.now + .seconds(120)
        while true {
            if let text = try? String(contentsOfFile: out, encoding: .utf8), let line = text.split(separator: "\n").first,
               let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let b = obj["bootstrap"] as? String {
                bootstrap = b
                return
            }
            guard process.isRunning, ContinuousClock.now < deadline else {
                process.signal(SIGKILL)
                let log = (try? String(contentsOfFile: out + ".log", encoding: .utf8)) ?? ""
                throw BrokerFailed(message: "the mock cluster did not start:\n\(log.suffix(2_000))")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// The first broker's address.
    public var firstBroker: String { String(bootstrap.split(separator: ",")[0]) }

    public func stop() {
        process.signal(SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: out)
        try? FileManager.default.removeItem(atPath: out + ".log")
    }

    deinit { process.signal(SIGKILL) }
}
