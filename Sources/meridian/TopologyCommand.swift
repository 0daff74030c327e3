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
                Reports every problem that would stop `meridian up` (duplicate ids, port clashes, SSL
                listeners without certificates, unknown client-auth modes); exit status 1 if any.

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
                say("region \(r.name): \(r.brokers.count) broker(s)")
                for b in r.brokers { print("  broker \(b.id): \(b.listeners.joined(separator: ", "))  data: \(b.dataDir)") }
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
