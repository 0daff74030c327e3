import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Mirror
import Topology

struct LagCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lag",
        abstract: "How far each mirrored partition is behind its source, worst first.",
        discussion: """
            Reads /lag from the mirror of every region that flows copy into (the region's "mirrorMetrics" \
            address in topology.json, where `meridian mirror` serves it) and prints one line per \
            partition: records behind, seconds behind (age of the oldest record not yet copied), the \
            transfer time of recent batches and the state. Flows with an "slo" \
            ({"maxLagSeconds": 30, "maxLagRecords": 100000}) are checked: a missed objective is \
            marked with ! and makes the exit status 2, for cron and CI. A mirror that does not \
            answer makes it 1.

            Examples:
              meridian lag --topology topology.json
              meridian lag --topology topology.json --region eu-west --format json
              meridian lag --topology topology.json --watch
            """
    )

    @Option(help: "Path of the topology file.")
    var topology: String = "topology.json"

    @Option(help: "Only the mirror of this region (the target of its flows).")
    var region: String?

    @Option(help: "text (a table) or json (one object with the partitions and missed objectives).")
    var format: OutputFormat.Format = .text

    @Flag(help: "Redraw the table every --interval seconds until interrupted, like top.")
    var watch = false

    @Option(help: "Seconds between redraws with --watch.")
    var interval: Double = 2

    func run() async throws {
        let topo = try Topology.load(path: topology)
        var targets = Array(Set(topo.flows.map(\.target))).sorted()
        if let region {
            guard targets.contains(region) else {
                throw ValidationError("no flow copies into '\(region)'; regions with flows into them: \(targets.joined(separator: ", "))")
            }
            targets = [region]
        }
        guard !targets.isEmpty else { throw ValidationError("the topology has no flows, so nothing is mirrored") }
        let missing = targets.filter { topo.region($0)?.mirrorMetrics == nil }
        guard missing.isEmpty else {
            throw ValidationError("""
                region \(missing.joined(separator: ", ")) has no "mirrorMetrics" address in \(topology); add \
                "mirrorMetrics": "127.0.0.1:9644" to the region and run its mirror (it listens there)
                """)
        }
        repeat {
            var rows: [LagReport.Row] = []
            var unreachable: [String] = []
            for t in targets {
                let address = topo.region(t)!.mirrorMetrics!
                do {
                    rows += try LagReport.rows(fromLagJSON: try await Self.get("http://\(address)/lag"))
                } catch {
                    unreachable.append("the mirror of \(t) at \(address) did not answer (\(error)); is `meridian mirror --region \(t)` running?")
                }
            }
            let report = LagReport(rows: rows, flows: topo.flows)
            if watch { print("\u{1B}[H\u{1B}[2J", terminator: "") }
            if format == .json {
                let object: [String: Any] = [
                    "partitions": report.rows.map { r in
                        ["flow": r.flow, "topic": r.topic, "partition": r.partition, "remoteTopic": r.remoteTopic,
                         "lagRecords": r.lagRecords, "lagSeconds": r.lagSeconds, "state": r.state] as [String: Any]
                    },
                    "violations": report.violations.map(\.description),
                    "unreachable": unreachable,
                ]
                print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
            } else {
                if watch { print("meridian lag — \(Date()) — every \(interval) s, Ctrl-C to stop\n") }
                print(report.rows.isEmpty ? "no partitions are being mirrored yet\n" : report.table(), terminator: "")
                for v in report.violations { print("objective missed: \(v)") }
                for u in unreachable { print("error: \(u)") }
            }
            if watch {
                try await Task.sleep(for: .milliseconds(Int64(max(0.2, interval) * 1000)))
                continue
            }
            if !report.violations.isEmpty { throw ExitCode(2) }
            if !unreachable.isEmpty { throw ExitCode(1) }
        } while watch
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
