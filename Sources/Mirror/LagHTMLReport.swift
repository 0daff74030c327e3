import Foundation
import Topology

/// `meridian lag report`: one self-contained HTML page (inline CSS and SVG, no script, nothing
/// loaded from anywhere) with lag over time per flow and for the worst partitions, the current
/// table, each group's failover RPO, and the missed objectives highlighted.
public struct LagHTMLReport {
    public var report: LagReport
    public var groups: [ClusterLag.GroupRow]
    public var histories: [LagHistory]
    public var flows: [Topology.Flow]
    public var generatedAt: Date
    public var notes: [String]
    /// Partitions charted on their own, worst first.
    public var worstPartitions = 5

    public init(report: LagReport, groups: [ClusterLag.GroupRow], histories: [LagHistory], flows: [Topology.Flow],
                generatedAt: Date, notes: [String]) {
        self.report = report
        self.groups = groups
        self.histories = histories
        self.flows = flows
        self.generatedAt = generatedAt
        self.notes = notes
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    public func render() -> String {
        var body = ""
        let stamp = ISO8601DateFormatter().string(from: generatedAt)
        body += "<h1>Meridian replication lag</h1>\n<p class=\"meta\">Generated \(esc(stamp)) · \(report.rows.count) partitions in \(flows.count) flows"
        body += report.violations.isEmpty ? " · every objective met</p>\n" : " · <span class=\"badtext\">objectives missed: \(report.violations.count)</span></p>\n"
        for n in notes { body += "<p class=\"note\">\(esc(n))</p>\n" }
        if !report.violations.isEmpty {
            body += "<section class=\"violations\"><h2>Missed objectives</h2><ul>\n"
            for v in report.violations { body += "<li>\(esc(v.description))</li>\n" }
            body += "</ul></section>\n"
        }
        body += "<h2>Flows</h2>\n"
        for f in flows {
            let slo = f.slo.map { s in
                [s.maxLagSeconds.map { "≤ \(fmt($0)) s" }, s.maxLagRecords.map { "≤ \($0) records" }].compactMap { $0 }.joined(separator: ", ")
            }
            let beat = report.heartbeats.first { $0.name == f.name }?.heartbeatAgeSeconds
            body += "<section class=\"flow\"><h3>\(esc(f.name)) <small>\(esc(f.source)) → \(esc(f.target))"
            body += slo.map { " · objective \(esc($0))" } ?? ""
            body += beat.map { " · heartbeat \(fmt($0)) s ago" } ?? ""
            body += "</small></h3>\n"
            let h = history(for: f.name)
            let pts = h?.flowPoints(f.name) ?? []
            body += "<div class=\"charts\">"
            body += chart(title: "Records behind, all partitions", unit: "records", series: [(f.name, Self.palette[0], pts.map { ($0.time, $0.records) })],
                          limit: f.slo?.maxLagRecords.map(Double.init))
            body += chart(title: "Seconds behind, worst partition", unit: "s", series: [(f.name, Self.palette[1], pts.map { ($0.time, $0.seconds) })],
                          limit: f.slo?.maxLagSeconds)
            body += "</div></section>\n"
        }
        // Worst by seconds behind now or at any point of the history, so a lag that has passed still shows.
        let worst = report.rows.map { r -> (LagReport.Row, Double) in
            let k = LagHistory.Key(flow: r.flow, topic: r.topic, partition: r.partition)
            return (r, max(r.lagSeconds, history(for: r.flow)?.points(k).compactMap(\.seconds).max() ?? 0))
        }.sorted { ($0.1, $0.0.lagRecords) > ($1.1, $1.0.lagRecords) }.prefix(worstPartitions).map(\.0)
        if !worst.isEmpty {
            body += "<h2>Worst partitions <small>(by seconds behind, now or at their peak)</small></h2>\n<div class=\"charts\">"
            var secs: [(String, String, [(Int64, Double?)])] = []
            var recs: [(String, String, [(Int64, Double?)])] = []
            for (i, r) in worst.enumerated() {
                let k = LagHistory.Key(flow: r.flow, topic: r.topic, partition: r.partition)
                let p = history(for: r.flow)?.points(k) ?? []
                let color = Self.palette[i % Self.palette.count]
                secs.append(("\(r.flow) \(r.topic)-\(r.partition)", color, p.map { ($0.time, $0.seconds) }))
                recs.append(("\(r.flow) \(r.topic)-\(r.partition)", color, p.map { ($0.time, $0.records) }))
            }
            body += chart(title: "Seconds behind", unit: "s", series: secs, limit: nil)
            body += chart(title: "Records behind", unit: "records", series: recs, limit: nil)
            body += "</div>\n"
        }
        body += "<h2>Now</h2>\n" + currentTable()
        body += "<h2>Failover RPO per consumer group</h2>\n" + groupTable()
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Meridian replication lag — \(esc(stamp))</title>
            <style>
            body { font: 14px/1.4 system-ui, sans-serif; color: #222; background: #fff; margin: 24px auto; max-width: 1100px; padding: 0 16px; }
            h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
            h3 { font-size: 15px; margin: 16px 0 6px; } h3 small { font-weight: normal; color: #555; }
            .meta, .note { color: #555; } .note { font-style: italic; }
            .badtext { color: #b00020; font-weight: bold; }
            .violations { border: 2px solid #b00020; background: #fff0f0; padding: 4px 12px; }
            .charts { display: flex; flex-wrap: wrap; gap: 12px; }
            figure { margin: 0; } figcaption { font-size: 13px; color: #333; }
            svg.chart { width: 520px; height: 220px; border: 1px solid #e2e2e2; }
            table { border-collapse: collapse; width: 100%; font-size: 13px; }
            th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left; }
            td.n { text-align: right; font-variant-numeric: tabular-nums; }
            tr.bad td { background: #ffe3e3; color: #7a0014; font-weight: bold; }
            @media print { body { margin: 0; max-width: none; } .charts { display: block; } figure { break-inside: avoid; } }
            </style></head><body>
            \(body)</body></html>

            """
    }

    func history(for flow: String) -> LagHistory? {
        histories.first { h in h.keys.contains { $0.flow == flow } } ?? histories.first
    }

    func currentTable() -> String {
        guard !report.rows.isEmpty else { return "<p>No partitions are being mirrored yet.</p>\n" }
        let bad = Set(report.violations.map { "\($0.flow)\u{0}\($0.topic)\u{0}\($0.partition)" })
        var t = "<table><thead><tr><th>Flow</th><th>Topic</th><th>Partition</th><th>Records behind</th><th>Seconds behind</th>"
        t += "<th>Transfer p50</th><th>Transfer p99</th><th>State</th></tr></thead><tbody>\n"
        for r in report.rows {
            let cls = bad.contains("\(r.flow)\u{0}\(r.topic)\u{0}\(r.partition)") ? " class=\"bad\"" : ""
            t += "<tr\(cls)><td>\(esc(r.flow))</td><td>\(esc(r.topic))</td><td class=\"n\">\(r.partition)</td><td class=\"n\">\(r.lagRecords)</td>"
            t += "<td class=\"n\">\(fmt(r.lagSeconds))</td><td class=\"n\">\(ms(r.transferP50Seconds))</td><td class=\"n\">\(ms(r.transferP99Seconds))</td>"
            t += "<td>\(esc(r.state))</td></tr>\n"
        }
        return t + "</tbody></table>\n"
    }

    func groupTable() -> String {
        guard !groups.isEmpty else { return "<p>No consumer group of these flows has committed offsets in its source.</p>\n" }
        var t = "<table><thead><tr><th>Flow</th><th>Group</th><th>Topic</th><th>Partition</th><th>Committed</th><th>RPO records</th>"
        t += "<th>RPO seconds</th><th>Target offset</th><th>Exact offset</th><th>Re-reads</th></tr></thead><tbody>\n"
        for g in groups.sorted(by: { ($0.rpoRecords, $1.group) > ($1.rpoRecords, $0.group) }) {
            let cls = g.rpoRecords > 0 ? " class=\"bad\"" : ""
            t += "<tr\(cls)><td>\(esc(g.flow))</td><td>\(esc(g.group))</td><td>\(esc(g.topic))</td><td class=\"n\">\(g.partition)</td>"
            t += "<td class=\"n\">\(g.committed)</td><td class=\"n\">\(g.rpoRecords)</td><td class=\"n\">\(fmt(g.rpoSeconds))</td>"
            t += "<td class=\"n\">\(g.targetCommitted.map(String.init) ?? "—")</td><td class=\"n\">\(g.translated.map(String.init) ?? "—")</td>"
            t += "<td class=\"n\">\(g.reReads.map(String.init) ?? "not synced")</td></tr>\n"
        }
        return t + "</tbody></table>\n"
    }

    /// A line chart as inline SVG: time across, value up from 0, a dashed line at `limit`.
    func chart(title: String, unit: String, series: [(String, String, [(Int64, Double?)])], limit: Double?) -> String {
        let w = 520.0, h = 220.0, left = 58.0, right = 10.0, top = 12.0, bottom = 30.0
        let all = series.flatMap { $0.2 }
        let values = all.compactMap(\.1)
        let t0 = all.map(\.0).min() ?? 0, t1 = all.map(\.0).max() ?? 0
        let scale = AxisScale(covering: max(values.max() ?? 0, limit ?? 0))
        let vmax = scale.maximum
        // Times come from a mirror's /history: computed in Double, so no value can trap.
        func x(_ t: Int64) -> Double { t1 > t0 ? left + (w - left - right) * (Double(t) - Double(t0)) / (Double(t1) - Double(t0)) : left + (w - left - right) / 2 }
        func y(_ v: Double) -> Double { h - bottom - (h - top - bottom) * (vmax > 0 ? v / vmax : 0) }
        var s = "<figure><figcaption>\(esc(title)) (\(esc(unit)))</figcaption>"
        s += "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(w)) \(Int(h))\" role=\"img\" aria-label=\"\(esc(title))\">"
        s += "<rect x=\"0\" y=\"0\" width=\"\(Int(w))\" height=\"\(Int(h))\" fill=\"#fff\"/>"
        for v in scale.ticks {
            s += "<line x1=\"\(left)\" x2=\"\(w - right)\" y1=\"\(y(v))\" y2=\"\(y(v))\" stroke=\"#e6e6e6\"/>"
            s += "<text x=\"\(left - 4)\" y=\"\(y(v) + 4)\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">\(esc(scale.label(v)))</text>"
        }
        if !all.isEmpty {
            let f = DateFormatter()
            f.dateFormat = Double(t1) - Double(t0) > 86_400_000 ? "MM-dd HH:mm" : "HH:mm:ss"
            f.timeZone = TimeZone(identifier: "UTC")
            s += "<text x=\"\(left)\" y=\"\(h - 10)\" font-size=\"10\" fill=\"#555\">\(f.string(from: Date(timeIntervalSince1970: Double(t0) / 1000))) UTC</text>"
            s += "<text x=\"\(w - right)\" y=\"\(h - 10)\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">\(f.string(from: Date(timeIntervalSince1970: Double(t1) / 1000)))</text>"
        } else {
            s += "<text x=\"\(w / 2)\" y=\"\(h / 2)\" font-size=\"12\" text-anchor=\"middle\" fill=\"#888\">no samples yet</text>"
        }
        if let limit {
            s += "<line x1=\"\(left)\" x2=\"\(w - right)\" y1=\"\(y(limit))\" y2=\"\(y(limit))\" stroke=\"#b00020\" stroke-dasharray=\"6 4\"/>"
        }
        for (_, color, points) in series {
            // A gap where the partition was not sampled; a lone point is drawn as a dot.
            var runs: [[(Double, Double)]] = [[]]
            for (t, v) in points {
                if let v { runs[runs.count - 1].append((x(t), y(v))) } else if !runs[runs.count - 1].isEmpty { runs.append([]) }
            }
            for r in runs where !r.isEmpty {
                if r.count == 1 {
                    s += "<circle cx=\"\(r[0].0)\" cy=\"\(r[0].1)\" r=\"3.5\" fill=\"\(color)\"/>"
                } else {
                    s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\""
                    s += r.map { String(format: "%.1f,%.1f", $0.0, $0.1) }.joined(separator: " ") + "\"/>"
                }
            }
        }
        s += "</svg>"
        if series.count > 1 || limit != nil {
            s += "<figcaption>"
            s += series.map { "<span style=\"color:\($0.1)\">■</span> \(esc($0.0))" }.joined(separator: " &nbsp; ")
            if let limit { s += " &nbsp; <span style=\"color:#b00020\">- -</span> objective \(esc(axis(limit)))" }
            s += "</figcaption>"
        }
        return s + "</figure>"
    }

    func axis(_ v: Double) -> String {
        if v >= 1_000_000 { return fmt(v / 1_000_000) + "M" }
        if v >= 10_000 { return fmt(v / 1000) + "k" }
        return fmt(v)
    }

    /// Values come from mirrors' /lag and /history: anything a Double holds prints, nothing traps.
    func fmt(_ v: Double) -> String {
        guard v.isFinite, abs(v) < 1e15 else { return String(format: "%.3g", v) }
        return v == v.rounded() ? String(Int64(v)) : String(format: "%.1f", v)
    }
    func ms(_ s: Double?) -> String { s.map { String(format: "%.0f ms", $0 * 1000) } ?? "—" }

    func esc(_ s: String) -> String {
        var o = ""
        for c in s {
            switch c {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            default: o.append(c)
            }
        }
        return o
    }
}
