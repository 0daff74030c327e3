import Foundation
import Mirror
import Testing
import Topology

@Suite("meridian lag report", .timeLimit(.minutes(1)))
struct LagReportTests {
    func row(_ flow: String, _ topic: String, _ p: Int, records: Int64, seconds: Double, state: String = "running") -> LagReport.Row {
        LagReport.Row(flow: flow, source: "us-east", target: "eu-west", topic: topic, partition: p, remoteTopic: "us-east.\(topic)",
                      lagRecords: records, lagSeconds: seconds, state: state, transferP50Seconds: 0.012, transferP99Seconds: nil)
    }

    @Test func rowsComeWorstFirstAndMissedObjectivesAreNamed() {
        var strict = Topology.Flow(name: "us-to-eu", source: "us-east", target: "eu-west")
        strict.slo = .init(maxLagSeconds: 30, maxLagRecords: 1_000)
        let relaxed = Topology.Flow(name: "ap", source: "us-east", target: "ap-south")
        let report = LagReport(rows: [
            row("us-to-eu", "orders", 0, records: 10, seconds: 1),
            row("us-to-eu", "orders", 1, records: 5_000, seconds: 45, state: "stalled"),
            row("ap", "orders", 0, records: 90_000, seconds: 600),
            row("us-to-eu", "payments", 0, records: 0, seconds: 0),
        ], flows: [strict, relaxed])
        #expect(report.rows.map { "\($0.flow)/\($0.topic)-\($0.partition)" } == ["ap/orders-0", "us-to-eu/orders-1", "us-to-eu/orders-0", "us-to-eu/payments-0"])
        // The flow without objectives is never a violation, however far behind.
        #expect(report.violations.map(\.description) == ["us-to-eu orders-1: 45.0 s behind, objective 30.0 s",
                                                         "us-to-eu orders-1: 5000 records behind, objective 1000"])
        let table = report.table().split(separator: "\n").map(String.init)
        #expect(table.first?.hasPrefix("FLOW") == true)
        #expect(table[2].contains("5000!") && table[2].contains("45.0!") && table[2].hasSuffix("stalled"), "\(table)")
        #expect(!table[1].contains("!"))
        #expect(table[1].contains("12 ms"))
    }

    @Test func aMirrorsLagAnswerIsRead() throws {
        let json = #"{"partitions":[{"flow":"f","source":"a","target":"b","topic":"t","partition":2,"remoteTopic":"a.t","lagRecords":3,"lagSeconds":1.5,"state":"running","copiedRecords":9}]}"#
        let rows = try LagReport.parse(lagJSON: Data(json.utf8)).rows
        #expect(rows == [LagReport.Row(flow: "f", source: "a", target: "b", topic: "t", partition: 2, remoteTopic: "a.t", lagRecords: 3,
                                       lagSeconds: 1.5, state: "running", transferP50Seconds: nil, transferP99Seconds: nil)])
    }

    @Test func objectivesAreValidated() throws {
        let text = """
            {"version": 1, "regions": [{"name": "a", "bootstrap": ["127.0.0.1:1"], "mirrorMetrics": "127.0.0.1:9644"},
                                       {"name": "b", "bootstrap": ["127.0.0.1:2"]}],
             "flows": [{"name": "f", "source": "a", "target": "b", "slo": {"maxLagSeconds": 0, "maxLagRecords": -1}}]}
            """
        let topo = try JSONDecoder().decode(Topology.self, from: Data(text.utf8))
        #expect(topo.region("a")?.mirrorMetrics == "127.0.0.1:9644")
        #expect(topo.flow("f")?.slo == .init(maxLagSeconds: 0, maxLagRecords: -1))
        let problems = topo.validate()
        #expect(problems.contains { $0.contains("slo.maxLagSeconds") } && problems.contains { $0.contains("slo.maxLagRecords") }, "\(problems)")
    }
}
