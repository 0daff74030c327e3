import ArgumentParser
import Foundation
import Topology

struct TopologyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topology",
        abstract: "Inspect topology.json.",
        subcommands: [Check.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a topology file and summarise it.",
            discussion: """
                Reports every problem that would stop `meridian up` or `meridian mirror` (duplicate ids,
                port clashes, SSL listeners without certificates, unknown client-auth modes, flows
                between unknown regions, bad topic patterns, TLS flows to regions without an SSL
                listener or CA, flow cycles that mix prefix and identity naming); exit status 1 if any.

                Example:
                  meridian topology check --topology topology.json
                """
        )

        @Option(help: "Path of the topology file.")
        var topology: String = "topology.json"

        func run() throws {
            let topo = try Topology.load(path: topology)
            let problems = topo.validate()
            for r in topo.regions {
                if let bootstrap = r.bootstrap {
                    say("region \(r.name): external cluster at \(bootstrap.joined(separator: ", "))")
                    continue
                }
                say("region \(r.name): \(r.brokers.count) broker(s)")
                for b in r.brokers { say("  broker \(b.id): \(b.listeners.joined(separator: ", "))  data: \(b.dataDir)") }
            }
            for f in topo.flows {
                say("flow \(f.name): \(f.source) → \(f.target), topics \(f.topics.include.joined(separator: "|"))\(f.topics.exclude.isEmpty ? "" : " except \(f.topics.exclude.joined(separator: "|"))"), \(f.naming.rawValue) naming\(f.tls ? ", TLS" : "")")
            }
            if problems.isEmpty {
                say("\(topology): OK")
            } else {
                for p in problems { printError("problem: \(p)") }
                throw ExitCode(1)
            }
        }
    }
}
