import ArgumentParser
import Foundation
import KafkaProtocol
import Logging
import Mirror
import Topology

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check record by record that a flow copied its source exactly.",
        discussion: """
            Reads every selected partition of the flow in its source and in the target and compares \
            them through the offset mapping the flow stored in the target: each source record must be \
            at its exact target offset with the same key, value, headers (apart from the \
            meridian.origin header identity naming adds) and timestamp. Reports, with their offsets:
              missing     a source record with no copy in the target
              reordered   its copy is in the target at another offset
              altered     the record at its target offset differs (names the fields)
              duplicated  a second copy of a source record in the target
              unexpected  a target record no source record corresponds to
            Records the mirror has not copied yet are counted separately (that is lag, see \
            `meridian lag`). Run it while the mirror runs or after it stopped.

            Exit status: 0 when the copy is exact, 1 when something differs, 2 when a cluster could \
            not be read.

            Examples:
              meridian audit --topology topology.json --flow us-to-eu
              meridian audit --topology topology.json --flow us-to-eu --topic orders --from 2026-11-30T08:00:00Z
              meridian audit --topology topology.json --flow us-to-eu --format json
            """
    )

    @Option(help: "Path of the topology file.")
    var topology: String = "topology.json"

    @Option(help: "The flow to audit.")
    var flow: String

    @Option(help: "Only this source topic.")
    var topic: String?

    @Option(help: "Start at the first source record at or after this time (ISO-8601, e.g. 2026-11-30T08:00:00Z, or ms since the epoch).")
    var from: String?

    @Option(help: "Findings listed per partition at most (all are counted).")
    var maxFindings: Int = 20

    @Option(name: [.customShort("m"), .customLong("timeout")],
            help: ArgumentHelp("Seconds to keep trying to reach each cluster before giving up; a broker that cannot be reached is reported at once.", valueName: "seconds"))
    var timeout: Double = 10

    @Option(help: "text (a summary and findings) or json (one object).")
    var format: OutputFormat.Format = .text

    func run() async throws {
        let topo = try Topology.load(path: topology)
        let base = (topology as NSString).deletingLastPathComponent
        guard let f = topo.flow(flow) else {
            throw ValidationError("no flow named '\(flow)' in \(topology); flows: \(topo.flows.map(\.name).joined(separator: ", "))")
        }
        var fromMs: Int64?
        if let from {
            guard let ms = Int64(from) ?? parseISO8601(from) else {
                throw ValidationError("--from wants an ISO-8601 time (2026-11-30T08:00:00Z) or milliseconds since the epoch, not '\(from)'")
            }
            fromMs = ms
        }
        guard maxFindings >= 0 else { throw ValidationError("--max-findings must be 0 or more") }
        let started = ContinuousClock.now
        let text = format == .text
        let result: FlowAudit.Result
        do {
            result = try await withFlowClusters(f, topology: topo, base: base, retryTimeout: try clusterTimeout(timeout)) { source, target in
                let audit = try FlowAudit(flow: f, regions: Set(topo.regions.map(\.name)), source: source, target: target,
                                          logger: Logger(label: "meridian.audit"))
                return try await audit.run(topic: topic.map { TopicName($0) }, fromMs: fromMs, maxFindingsPerPartition: maxFindings) { r in
                    if text {
                        let bad = r.counts.values.reduce(0, +)
                        FileHandle.standardError.write(Data("audited \(r.source) → \(r.target): \(r.checked) records, \(bad == 0 ? "exact" : "\(bad) findings")\n".utf8))
                    }
                }
            }
        } catch let e as ValidationError {
            throw e
        } catch {
            FileHandle.standardError.write(Data("error: cannot audit flow \(f.name): \(error)\n".utf8))
            throw ExitCode(2)
        }
        let seconds = Double((ContinuousClock.now - started).components.attoseconds) / 1e18 + Double((ContinuousClock.now - started).components.seconds)
        let kinds: [FlowAudit.Finding.Kind] = [.missing, .reordered, .altered, .duplicated, .unexpected]
        if text {
            var table = [["TOPIC", "PARTITION", "CHECKED", "MISSING", "REORDERED", "ALTERED", "DUPLICATED", "UNEXPECTED", "NOT YET COPIED"]]
            for p in result.partitions {
                table.append([p.source.topic.rawValue, "\(p.source.partition)", "\(p.checked)"] + kinds.map { "\(p.counts[$0] ?? 0)" } + ["\(p.notYetCopied)"])
            }
            say(formatTable(table))
            for p in result.partitions {
                for finding in p.findings { say(finding.description) }
                let listed = p.findings.count, total = p.counts.values.reduce(0, +)
                if total > listed { say("… and \(total - listed) more in \(p.source) (raise --max-findings to list them)") }
            }
            say(result.exact
                ? String(format: "exact: %d records in %d partitions, each once, in order and unchanged (%.1f s)", result.checked, result.partitions.count, seconds)
                : String(format: "NOT exact: %d findings in %d records (%.1f s)", result.partitions.reduce(0) { $0 + $1.counts.values.reduce(0, +) }, result.checked, seconds))
        } else {
            try printJSON([
                "flow": f.name, "exact": result.exact, "checked": result.checked, "seconds": seconds,
                "partitions": result.partitions.map { p -> [String: Any] in
                    var counts: [String: Int] = [:]
                    for k in kinds { counts[k.rawValue] = p.counts[k] ?? 0 }
                    return ["topic": p.source.topic.rawValue, "partition": Int(p.source.partition), "remoteTopic": p.target.topic.rawValue,
                            "checked": p.checked, "notYetCopied": p.notYetCopied, "counts": counts,
                            "findings": p.findings.map { x -> [String: Any] in
                                var o: [String: Any] = ["kind": x.kind.rawValue, "detail": x.detail]
                                if let s = x.sourceOffset { o["sourceOffset"] = s }
                                if let t = x.targetOffset { o["targetOffset"] = t }
                                return o
                            }]
                },
            ])
        }
        if !result.exact { throw ExitCode(1) }
    }
}
