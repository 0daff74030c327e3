import ArgumentParser
import Broker
import Foundation
import KafkaWire
import Logging
import NIOPosix
import ServiceLifecycle
import Topology

struct BrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "Run one Kafka-compatible broker.",
        discussion: """
            The broker prints one line `ready <listeners>` on standard output once it accepts
            connections, and flushes and closes its logs on SIGTERM or Ctrl-C (exit status 0).

            Examples:
              meridian broker --data-dir /tmp/m1 --listener PLAINTEXT://127.0.0.1:9092
              meridian broker --data-dir /tmp/m1 --listener PLAINTEXT://127.0.0.1:9092 \\
                  --listener SSL://127.0.0.1:9093 --tls-cert deploy/certs/broker.pem \\
                  --tls-key deploy/certs/broker.key --tls-ca deploy/certs/ca.pem --tls-client-auth required
              meridian broker --topology topology.json --region us-east --broker-id 1

            A listener port of 0 picks a free port; the `ready` line shows the one chosen.
            """
    )

    @Option(help: "Directory for logs and metadata (created if missing).")
    var dataDir: String?

    @Option(name: .customLong("listener"), help: "PLAINTEXT://HOST:PORT or SSL://HOST:PORT; repeat for several. Default PLAINTEXT://127.0.0.1:9092.")
    var listeners: [String] = []

    @Option(name: .customLong("advertised-listener"), help: "Address clients are told to use, one per --listener, in the same order.")
    var advertisedListeners: [String] = []

    @Option(help: "PEM certificate (chain) for SSL listeners.")
    var tlsCert: String?

    @Option(help: "PEM private key for --tls-cert.")
    var tlsKey: String?

    @Option(help: "PEM CA bundle that signs client certificates (needed for client auth).")
    var tlsCA: String?

    @Option(help: "Client certificates on SSL listeners: required, requested or none.")
    var tlsClientAuth: String?

    @Option(help: "This broker's id (node.id).")
    var brokerId: Int32?

    @Option(help: "Create a topic when a client asks for its metadata: true or false.")
    var autoCreateTopics: Bool?

    @Option(help: "Partitions of auto-created topics and of CreateTopics requests that ask for the default.")
    var defaultPartitions: Int32?

    @Option(name: .customLong("config"), help: "Default topic config KEY=VALUE for every topic (e.g. retention.ms=3600000); repeatable.")
    var configs: [String] = []

    @Option(help: "Largest request in bytes (socket.request.max.bytes).")
    var socketRequestMaxBytes: Int = 100 * 1024 * 1024

    @Option(help: "Milliseconds between retention checks (log.retention.check.interval.ms).")
    var retentionCheckIntervalMs: Int64 = 300_000

    @Option(help: "Milliseconds between log cleaner passes over compacted topics (log.cleaner.backoff.ms).")
    var logCleanerBackoffMs: Int64 = 15_000

    @Option(help: "fsync before acknowledging acks=all produces, and let consumers read only what is fsynced: true or false.")
    var fsyncAcksAll: Bool = true

    @Option(help: "Most client connections at once, all listeners together (max.connections; default: from the file-descriptor limit).")
    var maxConnections: Int?

    @Option(help: "Most connections from one IP address (max.connections.per.ip; default unbounded).")
    var maxConnectionsPerIp: Int?

    @Option(help: "Close a connection with no request for this long (connections.max.idle.ms).")
    var connectionsMaxIdleMs: Int64 = 600_000

    @Option(help: "Close a TLS connection whose handshake has not finished after this many milliseconds.")
    var tlsHandshakeTimeoutMs: Int64 = 10_000

    @Option(help: "Bytes of requests being received or queued, all connections together (queued.max.request.bytes).")
    var queuedMaxRequestBytes: Int = 256 * 1024 * 1024

    @Option(help: "Bytes of requests and unsent responses one connection may hold before the broker stops reading from it.")
    var connectionMaxBufferedBytes: Int = 16 * 1024 * 1024

    @Option(help: "Largest Fetch response in bytes, whatever the client asks (fetch.max.bytes).")
    var fetchMaxBytes: Int = 55 * 1024 * 1024

    @Option(help: "Forget an idle idempotent producer's state after this many milliseconds (producer.id.expiration.ms).")
    var producerIdExpirationMs: Int64 = 86_400_000

    @Option(help: "Most members of one consumer group, pending ones included (group.max.size; default unbounded).")
    var groupMaxSize: Int?

    @Option(help: "Delay of an empty group's first rebalance, waiting for more members (group.initial.rebalance.delay.ms).")
    var groupInitialRebalanceDelayMs: Int64 = 3000

    @Option(help: "Smallest session timeout a consumer may ask for (group.min.session.timeout.ms).")
    var groupMinSessionTimeoutMs: Int32 = 6000

    @Option(help: "Largest session timeout a consumer may ask for (group.max.session.timeout.ms).")
    var groupMaxSessionTimeoutMs: Int32 = 1_800_000

    @Option(help: "Partitions of __consumer_offsets when it is first created (offsets.topic.num.partitions).")
    var offsetsTopicPartitions: Int32 = 50

    @Option(help: "How long committed offsets of an empty group are kept (offsets.retention.minutes).")
    var offsetsRetentionMinutes: Int64 = 10080

    @Option(help: "Milliseconds between expiry checks of committed offsets (offsets.retention.check.interval.ms).")
    var offsetsRetentionCheckIntervalMs: Int64 = 600_000

    @Option(help: "topology.json to read this broker's settings from (with --region and --broker-id).")
    var topology: String?

    @Option(help: "Region of --topology this broker belongs to.")
    var region: String?

    @OptionGroup var logOptions: LogOptions

    func resolvedConfig() throws -> BrokerConfig {
        var listenerTexts = listeners
        var dir = dataDir
        var tls = TLSSettings()
        var id = brokerId
        var autoCreate = autoCreateTopics
        var partitions = defaultPartitions
        var topicDefaults: [String: String] = [:]
        if let topology {
            let topo = try Topology.load(path: topology)
            let problems = topo.validate()
            guard problems.isEmpty else {
                throw ValidationError("\(topology) is not valid:\n  " + problems.joined(separator: "\n  "))
            }
            guard let regionName = region else { throw ValidationError("--topology needs --region NAME") }
            guard let r = topo.region(regionName) else {
                throw ValidationError("region '\(regionName)' is not in \(topology); it has: \(topo.regions.map(\.name).joined(separator: ", "))")
            }
            let b: Topology.Broker
            if let id {
                guard let found = r.brokers.first(where: { $0.id == id }) else {
                    throw ValidationError("region '\(regionName)' has no broker \(id); it has ids \(r.brokers.map { String($0.id) }.joined(separator: ", "))")
                }
                b = found
            } else {
                guard r.brokers.count == 1 else { throw ValidationError("region '\(regionName)' has several brokers; pass --broker-id") }
                b = r.brokers[0]
            }
            let base = (topology as NSString).deletingLastPathComponent
            id = b.id
            if listenerTexts.isEmpty { listenerTexts = b.listeners }
            if dir == nil { dir = Topology.resolve(b.dataDir, relativeTo: base) }
            let t = (b.tls ?? Topology.TLS()).overriding(r.tls)
            tls.certificatePath = t.cert.map { Topology.resolve($0, relativeTo: base) }
            tls.keyPath = t.key.map { Topology.resolve($0, relativeTo: base) }
            tls.caPath = t.ca.map { Topology.resolve($0, relativeTo: base) }
            if let a = t.clientAuth { tls.clientAuth = TLSSettings.ClientAuth(rawValue: a) ?? .none }
            if autoCreate == nil { autoCreate = r.defaults?.autoCreateTopics }
            if partitions == nil { partitions = r.defaults?.partitions }
            topicDefaults = r.defaults?.topicConfigs ?? [:]
        }
        if let tlsCert { tls.certificatePath = tlsCert }
        if let tlsKey { tls.keyPath = tlsKey }
        if let tlsCA { tls.caPath = tlsCA }
        if let tlsClientAuth {
            guard let a = TLSSettings.ClientAuth(rawValue: tlsClientAuth) else {
                throw ValidationError("--tls-client-auth must be required, requested or none")
            }
            tls.clientAuth = a
        }
        guard let dir else { throw ValidationError("give --data-dir DIR (or --topology with --region)") }
        if listenerTexts.isEmpty { listenerTexts = ["PLAINTEXT://127.0.0.1:9092"] }
        var config = BrokerConfig(dataDirectory: dir, listeners: try listenerTexts.map { try ListenerAddress(parsing: $0) })
        if !advertisedListeners.isEmpty {
            guard advertisedListeners.count == listenerTexts.count else {
                throw ValidationError("give one --advertised-listener per --listener (\(listenerTexts.count))")
            }
            config.advertisedListeners = try advertisedListeners.map { try ListenerAddress(parsing: $0) }
        }
        config.brokerID = id ?? 1
        config.autoCreateTopics = autoCreate ?? true
        config.defaultPartitions = partitions ?? 1
        guard config.defaultPartitions >= 1 else { throw ValidationError("--default-partitions must be at least 1") }
        if tls.certificatePath != nil || tls.caPath != nil { config.tls = tls }
        for c in configs {
            let parts = c.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--config takes KEY=VALUE, got '\(c)'") }
            topicDefaults[parts[0]] = parts[1]
        }
        for (k, v) in topicDefaults {
            if let why = LogConfigCheck.validate(k, v) { throw ValidationError("--config \(k)=\(v): \(why)") }
        }
        config.topicConfigDefaults = topicDefaults
        config.maxRequestBytes = socketRequestMaxBytes
        config.retentionCheckIntervalMs = retentionCheckIntervalMs
        config.fsyncOnAcksAll = fsyncAcksAll
        if let maxConnections { config.maxConnections = maxConnections }
        if let maxConnectionsPerIp { config.maxConnectionsPerIP = maxConnectionsPerIp }
        config.connectionsMaxIdleMs = connectionsMaxIdleMs
        config.tlsHandshakeTimeoutMs = tlsHandshakeTimeoutMs
        config.queuedMaxRequestBytes = queuedMaxRequestBytes
        config.maxBufferedBytesPerConnection = connectionMaxBufferedBytes
        config.fetchMaxBytes = fetchMaxBytes
        config.producerIDExpirationMs = producerIdExpirationMs
        if let groupMaxSize { config.groups.group.maxGroupSize = groupMaxSize }
        for (flag, value) in [("--max-connections", Int64(config.maxConnections)), ("--max-connections-per-ip", Int64(config.maxConnectionsPerIP)),
                              ("--connections-max-idle-ms", connectionsMaxIdleMs), ("--tls-handshake-timeout-ms", tlsHandshakeTimeoutMs),
                              ("--queued-max-request-bytes", Int64(queuedMaxRequestBytes)),
                              ("--connection-max-buffered-bytes", Int64(connectionMaxBufferedBytes)),
                              ("--fetch-max-bytes", Int64(fetchMaxBytes)), ("--producer-id-expiration-ms", producerIdExpirationMs),
                              ("--group-max-size", Int64(config.groups.group.maxGroupSize))] where value < 1 {
            throw ValidationError("\(flag) must be at least 1, got \(value)")
        }
        config.logCleanerBackoffMs = logCleanerBackoffMs
        config.groups.group.initialRebalanceDelayMs = groupInitialRebalanceDelayMs
        config.groups.group.minSessionTimeoutMs = groupMinSessionTimeoutMs
        config.groups.group.maxSessionTimeoutMs = groupMaxSessionTimeoutMs
        guard offsetsTopicPartitions >= 1 else { throw ValidationError("--offsets-topic-partitions must be at least 1") }
        config.groups.offsetsTopicPartitions = offsetsTopicPartitions
        config.groups.offsetsRetentionMs = offsetsRetentionMinutes * 60_000
        config.groups.offsetsRetentionCheckIntervalMs = offsetsRetentionCheckIntervalMs
        return config
    }

    func run() async throws {
        let logger = logOptions.bootstrap(label: "meridian.broker")
        let config: BrokerConfig
        do {
            config = try resolvedConfig()
        } catch let e as ValidationError {
            throw e
        } catch {
            throw ValidationError("\(error)")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: config.threads)
        let broker: Broker
        do {
            broker = try Broker(config: config, logger: logger, eventLoopGroup: group)
        } catch {
            logger.critical("cannot open the data directory", metadata: ["dir": "\(config.dataDirectory)", "error": "\(error)"])
            try? await group.shutdownGracefully()
            throw ExitCode(1)
        }
        let server = BrokerServer(broker: broker, group: group) { bound in
            FileHandle.standardOutput.write(Data(("ready " + bound.map(\.description).joined(separator: ",") + "\n").utf8))
        }
        let services = ServiceGroup(configuration: .init(
            services: [.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await services.run()
        } catch {
            logger.critical("broker failed", metadata: ["error": "\(error)"])
            broker.logs.closeAll()
            try? await group.shutdownGracefully()
            throw ExitCode(1)
        }
        try? await group.shutdownGracefully()
    }
}

import LogStorage

enum LogConfigCheck {
    static func validate(_ k: String, _ v: String) -> String? { LogConfig.validate(k, v) }
}
