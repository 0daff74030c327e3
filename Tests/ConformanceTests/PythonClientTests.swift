import Foundation
import Testing
import TestSupport

/// confluent-kafka (librdkafka 2.x) and kafka-python against a broker process.
@Suite("Python clients", .enabled(if: ExternalTools.shouldRun(ExternalTools.python)), .timeLimit(.minutes(5)))
struct PythonClientTests {
    func runScript(_ name: String, _ args: [String]) async throws -> [String: Any] {
        let python = try ExternalTools.require(ExternalTools.python, "python venv with confluent-kafka and kafka-python")
        let script = ExternalTools.packageRoot.appendingPathComponent("Tests/ConformanceTests/python/\(name)").path
        let r = try await runProcess(python, [script] + args, timeout: 120)
        guard r.status == 0, let line = r.stdout.split(separator: "\n").last,
              let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw BrokerFailed(message: "\(name) failed (status \(r.status)):\n\(r.stdout)\n\(r.stderr)")
        }
        return obj
    }

    @Test func confluentIdempotentProducerAndSeekingConsumer() async throws {
        let broker = try await BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        let r = try await runScript("ck_producer_consumer.py", [broker.bootstrap, "ck-seek"])
        #expect((r["errors"] as? [String])?.isEmpty == true, "\(r["errors"] ?? "")")
        #expect(r["unflushed"] as? Int == 0)
        #expect(r["delivered"] as? Int == 2000)
        #expect(r["partition0_offsets"] as? [Int] == [0, 1, 2])
        // Seek to offset 250 of partition 0 (even i): records 500, 502, ...
        let byOffset = r["by_offset"] as? [[Any]] ?? []
        #expect(byOffset.map { $0[0] as? Int } == [250, 251, 252, 253, 254])
        #expect(byOffset.first?[1] as? String == "v500")
        // Seek by timestamp: the first record at or after base+601 is record 601 at offset 300.
        #expect(r["time_offset"] as? Int == 300)
        let byTime = r["by_time"] as? [[Any]] ?? []
        #expect(byTime.first?[1] as? String == "v601")
        #expect(byTime.first?[2] as? Int == (r["base_ts"] as? Int ?? 0) + 601)
    }

    @Test func confluentAdminCreateListDescribe() async throws {
        let broker = try await BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        let r = try await runScript("ck_admin.py", [broker.bootstrap, "ck-admin"])
        #expect((r["topics"] as? [String])?.contains("ck-admin") == true)
        #expect(r["partitions"] as? Int == 4)
        #expect(r["retention_ms"] as? String == "7200000")
        #expect(r["retention_is_default"] as? Bool == false)
        #expect(r["segment_bytes"] as? String == "1073741824")
        #expect(r["segment_is_default"] as? Bool == true)
        #expect(r["duplicate_error"] as? String == "TOPIC_ALREADY_EXISTS")
    }

    @Test func kafkaPythonProducerConsumerAdmin() async throws {
        let broker = try await BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        let r = try await runScript("kafka_python_clients.py", [broker.bootstrap, "kp-topic"])
        #expect((r["topics"] as? [String])?.contains("kp-topic") == true)
        #expect(r["idempotent"] as? Bool == true)
        #expect(r["acked"] as? Int == 3000)
        #expect(r["partitions_used"] as? [Int] == [0, 1, 2])
        #expect(r["consumed"] as? [String] == (0..<3000).map { "value-\($0)" }.sorted())
    }
}
