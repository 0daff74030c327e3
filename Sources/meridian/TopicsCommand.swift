import ArgumentParser
import Foundation
import KafkaClient
import KafkaProtocol
import KafkaWire

struct TopicsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topics",
        abstract: "Create, list, describe, change and delete topics.",
        discussion: """
            Examples:
              meridian topics create orders --partitions 6 --config retention.ms=86400000
              meridian topics list
              meridian topics describe orders
              meridian topics alter-config orders cleanup.policy=compact min.cleanable.dirty.ratio=0.1
              meridian topics delete orders --bootstrap broker-a:9092,broker-b:9092
            """,
        subcommands: [Create.self, List.self, Describe.self, AlterConfig.self, Delete.self]
    )

    static func parseConfigs(_ items: [String]) throws -> [String: String] {
        var out: [String: String] = [:]
        for c in items {
            let parts = c.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("config '\(c)' is not KEY=VALUE") }
            out[parts[0]] = parts[1]
        }
        return out
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a topic.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "Topic name: 1–249 characters of a-z A-Z 0-9 . _ -") var name: String
        @Option(help: "Number of partitions (default: the broker's).") var partitions: Int32 = -1
        @Option(help: "Replicas per partition (default: the broker's).") var replicationFactor: Int16 = -1
        @Option(name: .customLong("config"), help: "Topic config KEY=VALUE; repeatable.") var configs: [String] = []

        func run() async throws {
            let cfg = try TopicsCommand.parseConfigs(configs)
            try await client.withCluster { try await KafkaAdmin(cluster: $0).createTopic(TopicName(name), partitions: partitions,
                                                                                       replicationFactor: replicationFactor, configs: cfg) }
            say("created topic \(name)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List topics with their partition counts.")
        @OptionGroup var client: ClientOptions
        @Flag(name: .customLong("internal"), help: "Include internal topics such as __consumer_offsets.") var includeInternal = false
        @OptionGroup var output: OutputFormat

        func run() async throws {
            let topics = try await client.withCluster { try await KafkaAdmin(cluster: $0).listTopics(includeInternal: includeInternal) }
            if output.isJSON {
                for t in topics {
                    try printJSON(["topic": t.name.rawValue, "partitions": t.partitions.count, "internal": t.isInternal, "topicId": "\(t.topicID)"])
                }
                return
            }
            if topics.isEmpty { say("no topics"); return }
            say(formatTable([["TOPIC", "PARTITIONS"]] + topics.map { [$0.name.rawValue, String($0.partitions.count)] }))
        }
    }

    struct Describe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Partitions, leaders, replicas and configs of a topic.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The topic.") var name: String
        @Flag(help: "Show every config, not only those set on the topic.") var allConfigs = false
        @OptionGroup var output: OutputFormat

        func run() async throws {
            let (info, configs, ends) = try await client.withCluster { cluster -> (KafkaCluster.TopicInfo, [KafkaAdmin.ConfigEntry], [TopicPartition: Int64]) in
                let admin = KafkaAdmin(cluster: cluster)
                let info = try await cluster.topic(TopicName(name))
                let tps = info.partitions.map { TopicPartition(info.name, $0.partition) }
                let configs: [KafkaAdmin.ConfigEntry]
                do {
                    configs = try await admin.describeTopicConfigs(TopicName(name))
                } catch KafkaConnectionError.noCommonVersion(let api) {
                    // Some Kafka-protocol servers (librdkafka's mock cluster) serve no DescribeConfigs.
                    printError("note: the cluster does not serve \(api.name); configs are not shown")
                    configs = []
                }
                return (info, configs, try await admin.listOffsets(tps, .latest))
            }
            let shown = configs.filter { allConfigs || $0.source == "topic" }
            if output.isJSON {
                try printJSON([
                    "topic": info.name.rawValue, "topicId": "\(info.topicID)", "internal": info.isInternal,
                    "partitions": info.partitions.map { p -> [String: Any] in
                        ["partition": p.partition, "leader": p.leader.rawValue, "replicas": p.replicas.map(\.rawValue),
                         "isr": p.isr.map(\.rawValue), "endOffset": ends[TopicPartition(info.name, p.partition)] ?? -1]
                    },
                    "configs": Dictionary(shown.map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 }),
                ])
                return
            }
            say("topic \(info.name)  id \(info.topicID)  partitions \(info.partitions.count)\(info.isInternal ? "  (internal)" : "")")
            say(formatTable([["PARTITION", "LEADER", "REPLICAS", "ISR", "END-OFFSET"]] + info.partitions.map { p in
                [String(p.partition), String(p.leader.rawValue), p.replicas.map { String($0.rawValue) }.joined(separator: ","),
                 p.isr.map { String($0.rawValue) }.joined(separator: ","), String(ends[TopicPartition(info.name, p.partition)] ?? -1)]
            }))
            if !shown.isEmpty {
                say("")
                say(formatTable([["CONFIG", "VALUE", "SOURCE"]] + shown.map { [$0.name, $0.value ?? "(null)", $0.source] }))
            }
        }
    }

    struct AlterConfig: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "alter-config", abstract: "Set or remove topic configs.",
            discussion: "Example: meridian topics alter-config orders --config retention.ms=3600000 --delete-config segment.bytes")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The topic.") var name: String
        @Option(name: .customLong("config"), help: "Topic config KEY=VALUE to set; repeatable.") var configs: [String] = []
        @Argument(help: ArgumentHelp("KEY=VALUE settings (an older spelling of --config).", visibility: .hidden)) var settings: [String] = []
        @Option(name: .customLong("delete-config"), help: "Return KEY to its default; repeatable.") var deletes: [String] = []

        func run() async throws {
            var changes: [String: String?] = [:]
            for (k, v) in try TopicsCommand.parseConfigs(configs + settings) { changes[k] = .some(v) }
            for k in deletes { changes[k] = .some(nil) }
            guard !changes.isEmpty else { throw ValidationError("give KEY=VALUE settings or --delete-config KEY") }
            try await client.withCluster { try await KafkaAdmin(cluster: $0).alterTopicConfigs(TopicName(name), changes) }
            say("changed \(changes.count) config(s) of \(name)")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a topic and all its records.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The topic.") var name: String

        func run() async throws {
            try await client.withCluster { try await KafkaAdmin(cluster: $0).deleteTopic(TopicName(name)) }
            say("deleted topic \(name)")
        }
    }
}
