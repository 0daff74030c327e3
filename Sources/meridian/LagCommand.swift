import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Mirror
import Topology

struct LagCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lag",
        abstract: "How far each mirrored partition is behind its source, worst first; group failover RPO; an HTML report.",
        subcommands: [Show.self, Report.self],
        defaultSubcommand: Show.self
    )

    /// Options every `lag` command takes.
    struct Common: ParsableArguments {
        @Option(help: "Path of the topology file.")
        var topology: String = "topology.json"

        @Option(help: "Only the flows into this region (where its mirror runs).")
        var region: String?

        @Flag(help: "Compute from the clusters and the stored offset mapping even when a mirror answers.")
        var fromClusters = false

        @Option(name: [.customShort("m"), .customLong("timeout")],
                help: ArgumentHelp("Seconds to keep trying to reach each cluster (when lag is computed from them) before giving up; a broker that cannot be reached is reported at once.", valueName: "seconds"))
        var timeout: Double = 5
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show",
            abstract: "Print the lag of every mirrored partition, worst first (the default of `meridian lag`).",
            discussion: """
                Reads /lag from the mirror of every region that flows copy into (the region's "mirrorMetrics" \
                address in topology.json, where `meridian mirror` serves it). When that mirror does not \
                answer, the lag is computed from the two clusters and the offset mapping the flow stored in \
                the target (state "stalled" for a partition behind, "caught-up" otherwise) and a note says so.

                Columns: records behind (source high watermark − next source offset to copy), seconds \
                behind (age of the oldest record not yet copied; 0 when caught up), transfer p50/p99 of \
                recent batches (fetched → acknowledged by the target; mirror only) and the state: running, \
                stalled (behind and no progress for 10 s), reconnecting, source-unreachable, stopped. \
                Under the table, each flow's heartbeat age: how long ago the newest heartbeat the source's \
                mirror wrote crossed — it grows when the link stalls even if no data flows.

                With --groups: per consumer group of each flow and partition, what failing over now costs: \
                records the group consumed in the source that are not in the target (RPO, in records and \
                the age of the oldest of them) and records it would read twice (its synced target offset \
                behind the exact translation; 0 once the mirror synced it).

                Flows with an "slo" ({"maxLagSeconds": 30, "maxLagRecords": 100000}) are checked: a \
                missed objective is marked with ! and makes the exit status 2, for cron and CI. Exit \
                status 1 when neither the mirror nor the clusters answer.

                Examples:
                  meridian lag --topology topology.json
                  meridian lag --topology topology.json --region eu-west --format json
                  meridian lag --topology topology.json --watch
                  meridian lag --topology topology.json --groups
                """
        )

        @OptionGroup var common: Common

        @Option(help: "text (a table) or json (one object with the partitions, flows, groups and missed objectives).")
        var format: OutputFormat.Format = .text

        @Flag(help: "Also show each consumer group's failover RPO (computed from the clusters).")
        var groups = false

        @Flag(help: "Redraw the table every --interval seconds until interrupted, like top.")
        var watch = false

        @Option(help: "Seconds between redraws with --watch.")
        var interval: Double = 2

        func validate() throws {
            guard interval >= 0.2, interval <= 86_400 else { throw ValidationError("--interval wants 0.2 to 86400 seconds") }
        }

        func run() async throws {
            let topo = try Topology.load(path: common.topology)
            let base = (common.topology as NSString).deletingLastPathComponent
            let flows = try LagGathering.flows(topo, region: common.region)
            repeat {
                let g = await LagGathering.collect(topo, base: base, flows: flows, fromClusters: common.fromClusters, groups: groups,
                                                  timeout: common.timeout)
                let report = g.report
                if watch { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                if format == .json {
                    print(String(decoding: try g.json(), as: UTF8.self))
                } else {
                    if watch { print("meridian lag — \(Date()) — every \(interval) s, Ctrl-C to stop\n") }
                    print(report.rows.isEmpty ? "no partitions are being mirrored yet\n" : report.table(), terminator: "")
                    for h in report.heartbeats {
                        print("heartbeat \(h.name): " + (h.heartbeatAgeSeconds.map { String(format: "%.1f s ago", $0) } ?? "none crossed yet"))
                    }
                    if groups {
                        print("")
                        print(g.groups.isEmpty ? "no consumer group of these flows has committed offsets in the source" : LagGathering.groupTable(g.groups))
                    }
                    for v in report.violations { print("objective missed: \(v)") }
                }
                for n in g.notes { FileHandle.standardError.write(Data("note: \(n)\n".utf8)) }
                for f in g.failures { FileHandle.standardError.write(Data("error: \(f)\n".utf8)) }
                if watch {
                    try await Task.sleep(for: .milliseconds(Int64(max(0.2, interval) * 1000)))
                    continue
                }
                if !report.violations.isEmpty { throw ExitCode(2) }
                if !g.failures.isEmpty { throw ExitCode(1) }
            } while watch
        }
    }

    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "report",
            abstract: "Write a self-contained HTML report: lag charts over time, the current table, group RPO, missed objectives.",
            discussion: """
                The charts come from the history the mirrors keep (/history: one point per 10 s for 24 h, \
                kept across restarts with `meridian mirror --history-file`); with no mirror answering \
                they show the current point only. The page has no script and loads nothing: it can be \
                mailed, archived or printed.

                Example:
                  meridian lag report --topology topology.json --out report.html
                """
        )

        @OptionGroup var common: Common

        @Option(help: "Where to write the HTML file.")
        var out: String = "lag-report.html"

        func run() async throws {
            let topo = try Topology.load(path: common.topology)
            let base = (common.topology as NSString).deletingLastPathComponent
            let flows = try LagGathering.flows(topo, region: common.region)
            let (summary, failures) = try await LagGathering.writeReport(topo, base: base, flows: flows, fromClusters: common.fromClusters, out: out,
                                                                             timeout: common.timeout)
            print(summary)
            if !failures.isEmpty { throw ExitCode(1) }
        }
    }
}

/// Gathers the lag of a set of flows: from their mirrors' /lag (and /history) where they answer,
/// else from the clusters.
enum LagGathering {
    struct Result {
        var report: LagReport
        var groups: [ClusterLag.GroupRow] = []
        var histories: [LagHistory] = []
        var notes: [String] = []
        var failures: [String] = []

        func json() throws -> Data {
            let object: [String: Any] = [
                "partitions": report.rows.map { r in
                    var o: [String: Any] = ["flow": r.flow, "topic": r.topic, "partition": r.partition, "remoteTopic": r.remoteTopic,
                                            "lagRecords": r.lagRecords, "lagSeconds": r.lagSeconds, "state": r.state]
                    if let v = r.transferP50Seconds { o["transferP50Seconds"] = v }
                    if let v = r.transferP99Seconds { o["transferP99Seconds"] = v }
                    return o
                },
                "flows": report.heartbeats.map { h in
                    var o: [String: Any] = ["name": h.name]
                    if let a = h.heartbeatAgeSeconds { o["heartbeatAgeSeconds"] = a }
                    return o
                },
                "groups": groups.map { g in
                    var o: [String: Any] = ["flow": g.flow, "group": g.group, "topic": g.topic, "partition": g.partition,
                                            "remoteTopic": g.remoteTopic, "committed": g.committed, "rpoRecords": g.rpoRecords,
                                            "rpoSeconds": g.rpoSeconds]
                    if let v = g.targetCommitted { o["targetCommitted"] = v }
                    if let v = g.translated { o["translated"] = v }
                    if let v = g.reReads { o["reReads"] = v }
                    return o
                },
                "violations": report.violations.map(\.description),
                "notes": notes,
                "errors": failures,
            ]
            return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        }
    }

    static func nowMs() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    static func flows(_ topo: Topology, region: String?) throws -> [Topology.Flow] {
        guard !topo.flows.isEmpty else { throw ValidationError("the topology has no flows, so nothing is mirrored") }
        guard let region else { return topo.flows }
        let flows = topo.flows.filter { $0.target == region }
        guard !flows.isEmpty else {
            let targets = Array(Set(topo.flows.map(\.target))).sorted()
            throw ValidationError("no flow copies into '\(region)'; regions with flows into them: \(targets.joined(separator: ", "))")
        }
        return flows
    }

    static func collect(_ topo: Topology, base: String, flows: [Topology.Flow], fromClusters: Bool, groups: Bool,
                        history wantHistory: Bool = false, timeout: Double = 5) async -> Result {
        var rows: [LagReport.Row] = []
        var heartbeats: [LagReport.FlowHeartbeat] = []
        var result = Result(report: LagReport(rows: [], flows: []))
        let regions = Set(topo.regions.map(\.name))
        for target in Array(Set(flows.map(\.target))).sorted() {
            let into = flows.filter { $0.target == target }
            var fromMirror = false
            if !fromClusters, let address = topo.region(target)?.mirrorMetrics {
                do {
                    let answer = try LagReport.parse(lagJSON: try await get("http://\(address)/lag"))
                    let names = Set(into.map(\.name))
                    rows += answer.rows.filter { names.contains($0.flow) }
                    heartbeats += answer.heartbeats.filter { names.contains($0.name) }
                    fromMirror = true
                    if wantHistory, let h = try? LagHistory.decode(try await get("http://\(address)/history")) {
                        result.histories.append(h)
                    }
                } catch {
                    result.notes.append("the mirror of \(target) at \(address) did not answer (\(error)); lag of its flows computed from the clusters — is `meridian mirror --region \(target)` running?")
                }
            }
            for f in into where !fromMirror || groups {
                do {
                    let snap = try await withFlowClusters(f, topology: topo, base: base, retryTimeout: try clusterTimeout(timeout)) { source, target in
                        try await ClusterLag(flow: f, regions: regions, source: source, target: target, logger: Logger(label: "meridian.lag"))
                            .measure(nowMs: nowMs(), groups: groups) { $0 ? "stalled" : "caught-up" }
                    }
                    if !fromMirror {
                        rows += snap.rows
                        heartbeats.append(.init(name: f.name, heartbeatAgeSeconds: snap.heartbeatAgeSeconds))
                    }
                    result.groups += snap.groups
                } catch {
                    result.failures.append("cannot read the lag of flow \(f.name) from its clusters (\(f.source) → \(f.target)): \(error)")
                }
            }
        }
        result.report = LagReport(rows: rows, flows: flows)
        result.report.heartbeats = heartbeats.sorted { $0.name < $1.name }
        return result
    }

    /// Writes the HTML report of `flows` to `out`; returns a one-line summary and the failures.
    static func writeReport(_ topo: Topology, base: String, flows: [Topology.Flow], fromClusters: Bool, out: String,
                            timeout: Double = 5) async throws -> (String, [String]) {
        let g = await collect(topo, base: base, flows: flows, fromClusters: fromClusters, groups: true, history: true, timeout: timeout)
        for n in g.notes { FileHandle.standardError.write(Data("note: \(n)\n".utf8)) }
        for f in g.failures { FileHandle.standardError.write(Data("error: \(f)\n".utf8)) }
        var histories = g.histories
        // Flows no mirror answered for are charted from this one point.
        let charted = Set(histories.flatMap { $0.keys.map(\.flow) })
        var now = LagHistory()
        now.record(now: nowMs(), rows: g.report.rows.filter { !charted.contains($0.flow) })
        if !now.keys.isEmpty || histories.isEmpty { histories.append(now) }
        let html = LagHTMLReport(report: g.report, groups: g.groups, histories: histories, flows: flows,
                                 generatedAt: Date(), notes: g.notes + g.failures).render()
        do {
            try Data(html.utf8).write(to: URL(fileURLWithPath: out))
        } catch {
            throw ValidationError("cannot write \(out): \(error.localizedDescription)")
        }
        let summary = "wrote \(out) (\(html.utf8.count / 1024) KiB): \(g.report.rows.count) partitions, "
            + "\(histories.map(\.times.count).max() ?? 0) points of history, \(g.report.violations.count) missed objectives"
        return (summary, g.failures)
    }

    static func groupTable(_ rows: [ClusterLag.GroupRow]) -> String {
        let sorted = rows.sorted { ($0.rpoSeconds, $0.rpoRecords, $1.group, $1.topic, $1.partition) > ($1.rpoSeconds, $1.rpoRecords, $0.group, $0.topic, $0.partition) }
        var table = [["FLOW", "GROUP", "TOPIC", "PARTITION", "COMMITTED", "RPO RECORDS", "RPO SECONDS", "TARGET OFFSET", "EXACT", "RE-READS"]]
        for g in sorted {
            table.append([g.flow, g.group, g.topic, "\(g.partition)", "\(g.committed)", "\(g.rpoRecords)", String(format: "%.1f", g.rpoSeconds),
                          g.targetCommitted.map(String.init) ?? "-", g.translated.map(String.init) ?? "-", g.reReads.map(String.init) ?? "not synced"])
        }
        return formatTable(table)
    }

    /// GET with a short timeout: a mirror that does not answer is reported within seconds.
    static func get(_ url: String) async throws -> Data {
        var request = URLRequest(url: URL(string: url)!)
        request.timeoutInterval = 3
        let (data, response) = try await URLSession.shared.data(for: request)
        guard let http = response as? HTTPURLResponse, http.statusCode == 200 else {
            throw ValidationError("HTTP \((response as? HTTPURLResponse)?.statusCode ?? 0) from \(url)")
        }
        return data
    }
}
