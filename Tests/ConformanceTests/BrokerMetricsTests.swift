import Foundation
import Testing
import TestSupport

/// `meridian broker --metrics`: what Prometheus scrapes, read with Prometheus's own Python parser
/// after real clients worked with the broker.
@Suite("Broker /metrics", .timeLimit(.minutes(3)))
struct BrokerMetricsTests {
    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func metricsCountRequestsErrorsBytesConnectionsOffsetsAndGroupLag() async throws {
        let broker = try await BrokerProcess(arguments: ["--metrics", "127.0.0.1:0"])
        defer { broker.terminate(); broker.removeData() }
        let out = try String(contentsOfFile: broker.dataDir + ".out", encoding: .utf8)
        let line = try #require(out.split(separator: "\n").first { $0.hasPrefix("metrics on http://") }, "printed at start: \(out)")
        let url = String(line.dropFirst("metrics on ".count))
        let kcat = try ExternalTools.require(ExternalTools.kcat, "kcat")
        let python = try ExternalTools.require(ExternalTools.python, "python venv")

        #expect(try await runProcess(BrokerProcess.binary, ["topics", "create", "t", "--partitions", "1", "-b", broker.bootstrap]).status == 0)
        let records = (0..<10).map { "r\($0)" }.joined(separator: "\n") + "\n"
        #expect(try await runProcess(kcat, ["-P", "-b", broker.bootstrap, "-t", "t"], input: Data(records.utf8)).status == 0)
        // A fetch past the end: answered OFFSET_OUT_OF_RANGE (kcat then reports it and stops).
        _ = try await runProcess(kcat, ["-C", "-b", broker.bootstrap, "-t", "t", "-p", "0", "-o", "1000", "-e", "-X", "auto.offset.reset=error"], timeout: 30)
        // A group that committed offset 4 of 10.
        let commit = """
            import sys
            from confluent_kafka import Consumer, TopicPartition
            c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "g", "enable.auto.commit": False})
            c.commit(offsets=[TopicPartition("t", 0, 4)], asynchronous=False)
            c.close()
            """
        let committed = try await runProcess(python, ["-c", commit, broker.bootstrap], timeout: 60)
        #expect(committed.status == 0, "\(committed.stderr)")

        let scrape = """
            import json, sys, urllib.request
            from prometheus_client.parser import text_string_to_metric_families
            text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
            out = {"types": {}, "samples": []}
            for f in text_string_to_metric_families(text):
                out["types"][f.name] = f.type
                for s in f.samples:
                    out["samples"].append([s.name, s.labels, s.value])
            print(json.dumps(out))
            """
        let r = try await runProcess(python, ["-c", scrape, url], timeout: 30)
        #expect(r.status == 0, "\(r.stderr)")
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let types = parsed["types"] as? [String: String] ?? [:]
        let samples = (parsed["samples"] as? [[Any]] ?? []).compactMap { s -> (String, [String: String], Double)? in
            guard s.count == 3, let n = s[0] as? String, let l = s[1] as? [String: String], let v = s[2] as? Double else { return nil }
            return (n, l, v)
        }
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            samples.first { s in s.0 == name && labels.allSatisfy { k, v in s.1[k] == v } }?.2
        }
        for (family, type) in [("meridian_broker_requests", "counter"), ("meridian_broker_errors", "counter"),
                               ("meridian_broker_received_bytes", "counter"), ("meridian_broker_sent_bytes", "counter"),
                               ("meridian_broker_connections_open", "gauge"), ("meridian_broker_connections_accepted", "counter"),
                               ("meridian_broker_log_end_offset", "gauge"), ("meridian_broker_log_start_offset", "gauge"),
                               ("meridian_broker_high_watermark", "gauge"), ("meridian_broker_group_lag_records", "gauge")] {
            #expect(types[family] == type, "\(family) is a \(type): \(types)")
        }
        #expect((value("meridian_broker_requests_total", ["api": "Produce"]) ?? 0) >= 1)
        #expect((value("meridian_broker_requests_total", ["api": "Fetch"]) ?? 0) >= 1)
        #expect((value("meridian_broker_requests_total", ["api": "OffsetCommit"]) ?? 0) >= 1)
        #expect((value("meridian_broker_errors_total", ["api": "Fetch", "error": "OFFSET_OUT_OF_RANGE"]) ?? 0) >= 1, "\(samples.filter { $0.0.contains("errors") })")
        #expect((value("meridian_broker_received_bytes_total") ?? 0) > 100 && (value("meridian_broker_sent_bytes_total") ?? 0) > 100)
        #expect(value("meridian_broker_connections_open") != nil)
        #expect((value("meridian_broker_connections_accepted_total") ?? 0) >= 3)
        #expect(value("meridian_broker_log_end_offset", ["topic": "t", "partition": "0"]) == 10)
        #expect(value("meridian_broker_high_watermark", ["topic": "t", "partition": "0"]) == 10)
        #expect(value("meridian_broker_group_lag_records", ["group": "g", "topic": "t", "partition": "0"]) == 6)
    }
}
