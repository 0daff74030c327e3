import Foundation
import Mirror
import Testing
import Topology

@Suite("Lag HTML report", .timeLimit(.minutes(1)))
struct LagHTMLReportTests {
    static func sample() -> String {
        var flow = Topology.Flow(name: "us-to-eu", source: "us-east", target: "eu-west", topics: .init(include: [".*"], exclude: []))
        flow.slo = .init(maxLagSeconds: 30, maxLagRecords: nil)
        func row(_ p: Int, _ records: Int64, _ seconds: Double) -> LagReport.Row {
            LagReport.Row(flow: "us-to-eu", source: "us-east", target: "eu-west", topic: "orders<&>", partition: p, remoteTopic: "us-east.orders",
                          lagRecords: records, lagSeconds: seconds, state: seconds > 10 ? "stalled" : "running",
                          transferP50Seconds: 0.004, transferP99Seconds: 0.02)
        }
        var h = LagHistory()
        let t0: Int64 = 1_796_000_000_000
        for i in 0..<120 {
            let s = i < 60 ? 0.0 : Double(i - 60)
            // Partition 2 was far behind for a while and has caught up since.
            let past = (20..<40).contains(i) ? 100.0 : 0
            h.record(now: t0 + Int64(i) * 10_000, rows: [row(0, Int64(s * 100), s), row(1, 3, 0.2), row(2, Int64(past * 10), past)])
        }
        let now = [row(0, 5_900, 59), row(1, 3, 0.2), row(2, 0, 0)]
        var report = LagReport(rows: now, flows: [flow])
        report.heartbeats = [.init(name: "us-to-eu", heartbeatAgeSeconds: 58.7)]
        let groups = [ClusterLag.GroupRow(flow: "us-to-eu", group: "billing", topic: "orders<&>", partition: 0, remoteTopic: "us-east.orders",
                                          committed: 900, rpoRecords: 120, rpoSeconds: 12.5, targetCommitted: 780, translated: 780, reReads: 0)]
        return LagHTMLReport(report: report, groups: groups, histories: [h], flows: [flow], generatedAt: Date(timeIntervalSince1970: 1_796_001_200),
                             notes: []).render()
    }

    @Test func theReportHasChartsTablesAndTheMissedObjectiveHighlighted() throws {
        let html = Self.sample()
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(!html.contains("<script") && !html.contains("src="), "self-contained: no script, nothing loaded")
        #expect(html.components(separatedBy: "<svg class=\"chart\"").count - 1 == 4)
        #expect(html.contains("stroke-dasharray"), "the flow's 30 s objective is drawn on its seconds chart")
        #expect(html.contains("<tr class=\"bad\"><td>us-to-eu</td><td>orders&lt;&amp;&gt;</td><td class=\"n\">0</td>"),
                "the partition past its objective is highlighted, its name escaped")
        #expect(html.contains("59.0 s behind, objective 30"), "the missed objective is listed")
        #expect(html.contains("<td>billing</td>") && html.contains(">120<"), "group RPO table")
        #expect(html.contains("heartbeat 58.7 s ago"))
        let worst = try #require(html.range(of: "<h2>Worst partitions"))
        let legend = html[worst.upperBound...]
        let p2 = try #require(legend.range(of: "orders&lt;&amp;&gt;-2")), p0 = try #require(legend.range(of: "orders&lt;&amp;&gt;-0"))
        #expect(p2.lowerBound < p0.lowerBound, "a partition that was 100 s behind ranks before one 59 s behind now")
        if let out = ProcessInfo.processInfo.environment["LAG_REPORT_SAMPLE"] { try html.write(toFile: out, atomically: true, encoding: .utf8) }
    }

    @Test(arguments: [0.0, 0.23, 0.25, 0.26, 0.7, 1, 3, 7.3, 12, 99, 101, 1_234, 9_999, 45_678, 3.2e6, 1e-4, 0.0625, 1e300, -5, .nan, .infinity])
    func axesUseRoundStepsAndNeverRepeatALabel(_ value: Double) {
        let a = AxisScale(covering: value)
        let labels = a.ticks.map(a.label)
        #expect(Set(labels).count == labels.count, "labels of \(value): \(labels)")
        #expect(labels.first == "0" && a.ticks.count >= 2 && a.ticks.count <= 5, "\(value): \(labels)")
        if value.isFinite && value > 0 { #expect(a.maximum >= value) }
        let mantissa = a.step / pow(10, floor(log10(a.step)))
        #expect([1, 2, 2.5, 5].contains { abs($0 - mantissa) < 1e-9 }, "step \(a.step) of \(value)")
        // Each label reads back as its tick (in its unit), so none is a rounded stand-in.
        for (t, l) in zip(a.ticks, labels) where t > 0 {
            let unit = l.hasSuffix("M") ? 1e6 : l.hasSuffix("k") ? 1e3 : 1
            let number = Double(l.trimmingCharacters(in: CharacterSet(charactersIn: "kM")))!
            #expect(abs(number * unit - t) <= t * 1e-9, "\(l) for \(t)")
        }
    }

    @Test func aChartOfQuarterSecondLagLabelsItsAxisWithoutRepeats() {
        // The case the report got wrong: a peak of 0.25 s labelled 0, 0.1, 0.1, 0.2, 0.2.
        #expect(AxisScale(covering: 0.25).ticks.map(AxisScale(covering: 0.25).label) == ["0", "0.1", "0.2", "0.3"])
        let flow = Topology.Flow(name: "f", source: "a", target: "b", topics: .init(include: [".*"], exclude: []))
        var h = LagHistory()
        for i in 0..<10 {
            let seconds = Double(i) * 0.25 / 9
            h.record(now: 1_796_000_000_000 + Int64(i) * 10_000, rows: [
                LagReport.Row(flow: "f", source: "a", target: "b", topic: "t", partition: 0, remoteTopic: "a.t", lagRecords: 1,
                              lagSeconds: seconds, state: "running", transferP50Seconds: nil, transferP99Seconds: nil)])
        }
        let html = LagHTMLReport(report: LagReport(rows: [], flows: [flow]), groups: [], histories: [h], flows: [flow],
                                 generatedAt: Date(timeIntervalSince1970: 1_796_001_200), notes: []).render()
        let charts = html.components(separatedBy: "<svg class=\"chart\"").dropFirst()
        let seconds = charts.first { $0.hasPrefix(" xmlns") && $0.contains("aria-label=\"Seconds behind") } ?? ""
        let labels = seconds.components(separatedBy: "text-anchor=\"end\" fill=\"#555\">").dropFirst().compactMap { $0.split(separator: "<").first.map(String.init) }
            .filter { Double($0) != nil }
        #expect(labels.count >= 2 && Set(labels).count == labels.count, "\(labels)")
    }
}
