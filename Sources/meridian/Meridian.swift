import ArgumentParser

/// The `meridian` command: every tool of the platform behind one executable.
@main
struct Meridian: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meridian",
        abstract: "Kafka-compatible streaming with geo-replication.",
        discussion: """
            Start with `meridian up` to run every region of topology.json on this machine, or
            `meridian broker` to run one broker. Kafka clients (kcat, librdkafka, the Java client,
            kafka-python) connect to the listeners as they would to Apache Kafka.
            """,
        subcommands: [BrokerCommand.self, UpCommand.self, MirrorCommand.self, LagCommand.self, AuditCommand.self, DemoCommand.self, OffsetsCommand.self, TopicsCommand.self, ProduceCommand.self, ConsumeCommand.self, GroupsCommand.self, BenchCommand.self, TopologyCommand.self]
    )
}
