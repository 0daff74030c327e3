import ArgumentParser
import Foundation
import KafkaClient
import KafkaProtocol

struct GroupsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "groups",
        abstract: "List, inspect, delete consumer groups and reset their offsets.",
        discussion: """
            Examples:
              meridian groups list
              meridian groups describe orders-service
              meridian groups reset-offsets orders-service --topic orders --to-datetime 2026-01-01T00:00:00Z --execute
              meridian groups delete old-service --bootstrap broker:9092
            """,
        subcommands: [List.self, Describe.self, Delete.self, ResetOffsets.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every consumer group with its state.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputFormat

        func run() async throws {
            let groups = try await client.withCluster { try await KafkaAdmin(cluster: $0).listGroups() }
            if output.isJSON {
                for g in groups { try printJSON(["group": g.groupID.rawValue, "state": g.state, "protocolType": g.protocolType]) }
                return
            }
            if groups.isEmpty { say("no consumer groups"); return }
            say(formatTable([["GROUP", "STATE", "PROTOCOL-TYPE"]] + groups.map { [$0.groupID.rawValue, $0.state, $0.protocolType] }))
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Members, assignments, committed and end offsets, and lag per partition.",
            discussion: """
                LAG is LOG-END-OFFSET minus CURRENT-OFFSET: how many records the group has not
                processed yet. A partition without a commit shows '-'.
                """)
        @OptionGroup var client: ClientOptions
        @Argument(help: "The group.") var group: String
        @OptionGroup var output: OutputFormat

        func run() async throws {
            let g = GroupID(group)
            let (desc, committed, ends) = try await client.withCluster { cluster -> (KafkaAdmin.GroupDescription, [TopicPartition: Int64], [TopicPartition: Int64]) in
                let admin = KafkaAdmin(cluster: cluster)
                let d = try await admin.describeGroup(g)
                let c = try await admin.groupOffsets(g)
                let all = Set(c.keys).union(d.members.flatMap(\.assignment))
                let e = all.isEmpty ? [:] : try await admin.listOffsets(Array(all), .latest)
                return (d, c, e)
            }
            if desc.state == "Dead" && committed.isEmpty {
                printError("group '\(group)' does not exist")
                throw ExitCode(1)
            }
            var owner: [TopicPartition: KafkaAdmin.GroupMember] = [:]
            for m in desc.members { for tp in m.assignment { owner[tp] = m } }
            let partitions = Set(committed.keys).union(owner.keys).sorted()
            if output.isJSON {
                for tp in partitions {
                    var o: [String: Any] = ["topic": tp.topic.rawValue, "partition": tp.partition, "logEndOffset": ends[tp] ?? -1]
                    if let c = committed[tp] { o["currentOffset"] = c; o["lag"] = max(0, (ends[tp] ?? c) - c) }
                    if let m = owner[tp] { o["consumerID"] = m.memberID; o["host"] = m.host; o["clientID"] = m.clientID }
                    try printJSON(o)
                }
                try printJSON(["group": group, "state": desc.state, "protocol": desc.protocolName, "members": desc.members.count])
                return
            }
            say("group \(group): \(desc.state), \(desc.members.count) member(s)\(desc.protocolName.isEmpty ? "" : ", assignor \(desc.protocolName)")")
            var rows = [["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"]]
            for tp in partitions {
                let c = committed[tp]
                let e = ends[tp]
                let lag = c.flatMap { c in e.map { String(max(0, $0 - c)) } } ?? "-"
                let m = owner[tp]
                rows.append([tp.topic.rawValue, String(tp.partition), c.map(String.init) ?? "-", e.map(String.init) ?? "-", lag,
                             m?.memberID ?? "-", m?.host ?? "-", m?.clientID ?? "-"])
            }
            say(formatTable(rows))
            let idle = desc.members.filter { $0.assignment.isEmpty }
            for m in idle { say("member \(m.memberID) (\(m.clientID), \(m.host)) has no partitions") }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a group that has no active members, with its offsets.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The group.") var group: String

        func run() async throws {
            try await client.withCluster { try await KafkaAdmin(cluster: $0).deleteGroup(GroupID(group)) }
            say("deleted group \(group)")
        }
    }

    struct ResetOffsets: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset-offsets",
            abstract: "Move a group's committed offsets (the group must have no active members).",
            discussion: """
                Without --execute only the plan is shown. --topic T covers every partition of T;
                --topic T:0,2 only partitions 0 and 2.

                Examples:
                  meridian groups reset-offsets billing --topic invoices --to-earliest --execute
                  meridian groups reset-offsets billing --topic invoices:0 --to-offset 1200 --execute
                  meridian groups reset-offsets billing --topic invoices --to-datetime 2026-11-25T08:00:00Z
                """)
        @OptionGroup var client: ClientOptions
        @Argument(help: "The group.") var group: String
        @Option(name: .customLong("topic"), help: "Topic (or TOPIC:P,P...) to reset; repeatable.") var topics: [String] = []
        @Flag(help: "Reset to the earliest offset still in the log.") var toEarliest = false
        @Flag(help: "Reset to the end of the log (skip everything).") var toLatest = false
        @Option(help: "Reset to this offset (clamped to the log's range).") var toOffset: Int64?
        @Option(help: "Reset to the first record at or after this ISO-8601 time.") var toDatetime: String?
        @Flag(help: "Apply the change; without it the plan is only printed.") var execute = false

        func validate() throws {
            let chosen = [toEarliest, toLatest, toOffset != nil, toDatetime != nil].filter { $0 }.count
            guard chosen == 1 else { throw ValidationError("choose exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime") }
            guard !topics.isEmpty else { throw ValidationError("name the topics to reset with --topic") }
            if let t = toDatetime, parseISO8601(t) == nil {
                throw ValidationError("--to-datetime '\(t)' is not an ISO-8601 time such as 2026-11-25T08:00:00Z")
            }
        }

        func run() async throws {
            let g = GroupID(group)
            let plan: [(TopicPartition, Int64?, Int64)] = try await client.withCluster { cluster in
                let admin = KafkaAdmin(cluster: cluster)
                var tps: [TopicPartition] = []
                for spec in topics {
                    let parts = spec.split(separator: ":", maxSplits: 1)
                    let topic = TopicName(String(parts[0]))
                    if parts.count == 2 {
                        tps += try parts[1].split(separator: ",").map {
                            guard let p = Int32($0) else { throw ValidationError("bad partition '\($0)' in --topic \(spec)") }
                            return TopicPartition(topic, p)
                        }
                    } else {
                        tps += try await admin.partitions(of: [topic])
                    }
                }
                let current = try await admin.groupOffsets(g, partitions: tps)
                let earliest = try await admin.listOffsets(tps, .earliest)
                let latest = try await admin.listOffsets(tps, .latest)
                var target: [TopicPartition: Int64]
                if toEarliest {
                    target = earliest
                } else if toLatest {
                    target = latest
                } else if let o = toOffset {
                    target = Dictionary(uniqueKeysWithValues: tps.map { ($0, min(max(o, earliest[$0] ?? 0), latest[$0] ?? o)) })
                } else {
                    target = try await admin.listOffsets(tps, .timestamp(parseISO8601(toDatetime!)!))
                }
                let plan = tps.sorted().map { ($0, current[$0], target[$0] ?? 0) }
                if execute {
                    try await admin.alterGroupOffsets(g, Dictionary(uniqueKeysWithValues: plan.map { ($0.0, $0.2) }))
                }
                return plan
            }
            var rows = [["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]]
            for (tp, c, n) in plan { rows.append([tp.topic.rawValue, String(tp.partition), c.map(String.init) ?? "-", String(n)]) }
            say(formatTable(rows))
            say(execute ? "offsets of group \(group) reset" : "dry run: nothing changed; add --execute to apply")
        }
    }
}
