import ArgumentParser
import Broker
import Foundation
import KafkaWire
import Logging
import MetricsHTTP
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
              meridian broker --config-file config/server.properties --set log.dirs=/var/lib/meridian

            A listener port of 0 picks a free port; the `ready` line shows the one chosen.
            """
    )

    @Option(help: "A Kafka server.properties file: Kafka's property names (log.dirs, listeners, advertised.listeners, num.partitions, log.retention.hours, node.id, ssl.*, ...). Properties this broker does not use are reported once and ignored; flags win over the file.")
    var configFile: String?

    @Option(name: .customLong("set"), help: "A broker property KEY=VALUE with Kafka's name, over --config-file (e.g. --set num.partitions=3); repeatable.")
    var sets: [String] = []

    @Option(help: "Directory for logs and metadata (created if missing) (log.dirs).")
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

    @Option(help: "Largest request in bytes (socket.request.max.bytes); default 104857600.")
    var socketRequestMaxBytes: Int?

    @Option(help: "Milliseconds between retention checks (log.retention.check.interval.ms); default 300000.")
    var retentionCheckIntervalMs: Int64?

    @Option(help: "Milliseconds between log cleaner passes over compacted topics (log.cleaner.backoff.ms); default 15000.")
    var logCleanerBackoffMs: Int64?

    @Option(help: "fsync before acknowledging acks=all produces, and let consumers read only what is fsynced: true or false; default true.")
    var fsyncAcksAll: Bool?

    @Option(help: "Most client connections at once, all listeners together (max.connections; default: from the file-descriptor limit).")
    var maxConnections: Int?

    @Option(help: "Most connections from one IP address (max.connections.per.ip; default unbounded).")
    var maxConnectionsPerIp: Int?

    @Option(help: "Close a connection with no request for this long (connections.max.idle.ms); default 600000.")
    var connectionsMaxIdleMs: Int64?

    @Option(help: "Close a TLS connection whose handshake has not finished after this many milliseconds; default 10000.")
    var tlsHandshakeTimeoutMs: Int64?

    @Option(help: "Bytes of requests being received or queued, all connections together (queued.max.request.bytes); default 268435456.")
    var queuedMaxRequestBytes: Int?

    @Option(help: "Bytes of requests and unsent responses one connection may hold before the broker stops reading from it; default 16777216.")
    var connectionMaxBufferedBytes: Int?

    @Option(help: "Largest Fetch response in bytes, whatever the client asks (fetch.max.bytes); default 57671680.")
    var fetchMaxBytes: Int?

    @Option(help: "Forget an idle idempotent producer's state after this many milliseconds (producer.id.expiration.ms); default 86400000.")
    var producerIdExpirationMs: Int64?

    @Option(help: "Most members of one consumer group, pending ones included (group.max.size; default unbounded).")
    var groupMaxSize: Int?

    @Option(help: "Delay of an empty group's first rebalance, waiting for more members (group.initial.rebalance.delay.ms); default 3000.")
    var groupInitialRebalanceDelayMs: Int64?

    @Option(help: "Smallest session timeout a consumer may ask for (group.min.session.timeout.ms); default 6000.")
    var groupMinSessionTimeoutMs: Int32?

    @Option(help: "Largest session timeout a consumer may ask for (group.max.session.timeout.ms); default 1800000.")
    var groupMaxSessionTimeoutMs: Int32?

    @Option(help: "Partitions of __consumer_offsets when it is first created (offsets.topic.num.partitions); default 50.")
    var offsetsTopicPartitions: Int32?

    @Option(help: "How long committed offsets of an empty group are kept (offsets.retention.minutes); default 10080.")
    var offsetsRetentionMinutes: Int64?

    @Option(help: "Milliseconds between expiry checks of committed offsets (offsets.retention.check.interval.ms); default 600000.")
    var offsetsRetentionCheckIntervalMs: Int64?

    @Option(help: "topology.json to read this broker's settings from (with --region and --broker-id).")
    var topology: String?

    @Option(help: "Region of --topology this broker belongs to.")
    var region: String?

    @Option(help: ArgumentHelp("""
        Serve Prometheus metrics at http://HOST:PORT/metrics: requests and error codes by API, bytes \
        in and out, connections, every partition's offsets and each group's lag. Default: the \
        broker's "metrics" in --topology. Port 0 picks a free one, printed at start.
        """, valueName: "host:port"))
    var metrics: String?

    @OptionGroup var logOptions: LogOptions

    /// The configuration to run with, and the properties of --config-file/--set it did not use.
    func resolvedConfig() throws -> (BrokerConfig, ignored: [String]) {
        var props = try KafkaProperties.load(file: configFile, overrides: sets)
        var listenerTexts = listeners
        var advertisedTexts = advertisedListeners
        var dir = dataDir ?? props.string("log.dirs", "log.dir").map { String($0.split(separator: ",").first ?? "") }
        var tls = TLSSettings()
        var id = try brokerId ?? props.number("node.id", "broker.id")
        var autoCreate = try autoCreateTopics ?? props.bool("auto.create.topics.enable")
        var partitions = try defaultPartitions ?? props.number("num.partitions")
        var topicDefaults = try Self.topicDefaults(&props)
        if listenerTexts.isEmpty, let ls = try props.listeners("listeners") {
            listenerTexts = ls.map(\.address.description)
            if advertisedTexts.isEmpty, let ads = try props.listeners("advertised.listeners") {
                // advertised.listeners names the listeners it changes; the others advertise themselves.
                advertisedTexts = ls.map { l in (ads.first { $0.name == l.name }?.address ?? l.address).description }
            }
        }
        props.markUsed("listener.security.protocol.map", "controller.listener.names")
        if let store = props.string("ssl.keystore.location") {
            guard (props.string("ssl.keystore.type") ?? "JKS").uppercased() == "PEM" else {
                throw ValidationError("ssl.keystore.location: only PEM keystores are read (ssl.keystore.type=PEM, key and certificate chain in one file); convert a JKS or PKCS12 keystore with openssl")
            }
            tls.certificatePath = store
            tls.keyPath = store
        }
        if let trust = props.string("ssl.truststore.location") {
            guard (props.string("ssl.truststore.type") ?? "JKS").uppercased() == "PEM" else {
                throw ValidationError("ssl.truststore.location: only PEM truststores are read (ssl.truststore.type=PEM)")
            }
            tls.caPath = trust
        }
        if let auth = props.string("ssl.client.auth") {
            guard let a = TLSSettings.ClientAuth(rawValue: auth) else { throw ValidationError("ssl.client.auth must be required, requested or none") }
            tls.clientAuth = a
        }
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
            topicDefaults.merge(r.defaults?.topicConfigs ?? [:]) { $1 }
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
        if !advertisedTexts.isEmpty {
            guard advertisedTexts.count == listenerTexts.count else {
                throw ValidationError("give one --advertised-listener per --listener (\(listenerTexts.count))")
            }
            config.advertisedListeners = try advertisedTexts.map { try ListenerAddress(parsing: $0) }
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
        config.maxRequestBytes = try socketRequestMaxBytes ?? props.number("socket.request.max.bytes") ?? 100 * 1024 * 1024
        config.retentionCheckIntervalMs = try retentionCheckIntervalMs ?? props.number("log.retention.check.interval.ms") ?? 300_000
        config.fsyncOnAcksAll = fsyncAcksAll ?? true
        if let v = try maxConnections ?? props.number("max.connections") { config.maxConnections = v }
        if let v = try maxConnectionsPerIp ?? props.number("max.connections.per.ip") { config.maxConnectionsPerIP = v }
        config.connectionsMaxIdleMs = try connectionsMaxIdleMs ?? props.number("connections.max.idle.ms") ?? 600_000
        config.tlsHandshakeTimeoutMs = tlsHandshakeTimeoutMs ?? 10_000
        config.queuedMaxRequestBytes = try queuedMaxRequestBytes ?? props.number("queued.max.request.bytes") ?? 256 * 1024 * 1024
        config.maxBufferedBytesPerConnection = connectionMaxBufferedBytes ?? 16 * 1024 * 1024
        config.fetchMaxBytes = try fetchMaxBytes ?? props.number("fetch.max.bytes") ?? 55 * 1024 * 1024
        config.producerIDExpirationMs = try producerIdExpirationMs ?? props.number("producer.id.expiration.ms") ?? 86_400_000
        if let v = try groupMaxSize ?? props.number("group.max.size") { config.groups.group.maxGroupSize = v }
        for (flag, value) in [("--max-connections", Int64(config.maxConnections)), ("--max-connections-per-ip", Int64(config.maxConnectionsPerIP)),
                              ("--connections-max-idle-ms", config.connectionsMaxIdleMs), ("--tls-handshake-timeout-ms", config.tlsHandshakeTimeoutMs),
                              ("--queued-max-request-bytes", Int64(config.queuedMaxRequestBytes)),
                              ("--connection-max-buffered-bytes", Int64(config.maxBufferedBytesPerConnection)),
                              ("--fetch-max-bytes", Int64(config.fetchMaxBytes)), ("--producer-id-expiration-ms", config.producerIDExpirationMs),
                              ("--group-max-size", Int64(config.groups.group.maxGroupSize))] where value < 1 {
            throw ValidationError("\(flag) must be at least 1, got \(value)")
        }
        config.logCleanerBackoffMs = try logCleanerBackoffMs ?? props.number("log.cleaner.backoff.ms") ?? 15_000
        config.groups.group.initialRebalanceDelayMs = try groupInitialRebalanceDelayMs ?? props.number("group.initial.rebalance.delay.ms") ?? 3000
        config.groups.group.minSessionTimeoutMs = try groupMinSessionTimeoutMs ?? props.number("group.min.session.timeout.ms") ?? 6000
        config.groups.group.maxSessionTimeoutMs = try groupMaxSessionTimeoutMs ?? props.number("group.max.session.timeout.ms") ?? 1_800_000
        let offsetPartitions = try offsetsTopicPartitions ?? props.number("offsets.topic.num.partitions") ?? 50
        guard offsetPartitions >= 1 else { throw ValidationError("--offsets-topic-partitions must be at least 1") }
        config.groups.offsetsTopicPartitions = offsetPartitions
        let retentionMinutes: Int64 = try offsetsRetentionMinutes ?? props.number("offsets.retention.minutes") ?? 10080
        config.groups.offsetsRetentionMs = try Self.milliseconds(retentionMinutes, 60_000, "offsets.retention.minutes")
        config.groups.offsetsRetentionCheckIntervalMs = try offsetsRetentionCheckIntervalMs ?? props.number("offsets.retention.check.interval.ms") ?? 600_000
        return (config, props.ignored)
    }

    /// `value × unit` as milliseconds; a file's value too large for that is an error, not a trap.
    static func milliseconds(_ value: Int64, _ unit: Int64, _ name: String) throws -> Int64 {
        let (ms, overflow) = value.multipliedReportingOverflow(by: unit)
        guard !overflow else { throw ValidationError("\(name)=\(value) is too large") }
        return ms
    }

    /// Broker-wide topic defaults from Kafka's `log.*` properties (the topic configs they stand for).
    static func topicDefaults(_ props: inout KafkaProperties) throws -> [String: String] {
        var out: [String: String] = [:]
        // Kafka: log.retention.ms wins over .minutes, which wins over .hours.
        if let ms = props.string("log.retention.ms") {
            out["retention.ms"] = ms
            props.markUsed("log.retention.minutes", "log.retention.hours")
        } else if let m: Int64 = try props.number("log.retention.minutes") {
            out["retention.ms"] = String(try milliseconds(m, 60_000, "log.retention.minutes"))
            props.markUsed("log.retention.hours")
        } else if let h: Int64 = try props.number("log.retention.hours") {
            out["retention.ms"] = String(try milliseconds(h, 3_600_000, "log.retention.hours"))
        }
        if let ms = props.string("log.roll.ms") {
            out["segment.ms"] = ms
            props.markUsed("log.roll.hours")
        } else if let h: Int64 = try props.number("log.roll.hours") {
            out["segment.ms"] = String(try milliseconds(h, 3_600_000, "log.roll.hours"))
        }
        let direct = [("log.retention.bytes", "retention.bytes"), ("log.segment.bytes", "segment.bytes"),
                      ("log.cleanup.policy", "cleanup.policy"), ("message.max.bytes", "max.message.bytes"),
                      ("log.message.timestamp.type", "message.timestamp.type"), ("compression.type", "compression.type"),
                      ("log.index.interval.bytes", "index.interval.bytes"), ("log.cleaner.min.cleanable.ratio", "min.cleanable.dirty.ratio"),
                      ("log.cleaner.delete.retention.ms", "delete.retention.ms"), ("log.segment.delete.delay.ms", "file.delete.delay.ms")]
        for (kafka, topic) in direct where LogConfig.definition(topic) != nil {
            if let v = props.string(kafka) { out[topic] = v }
        }
        for (k, v) in out {
            if let why = LogConfigCheck.validate(k, v) { throw ValidationError("\(k)=\(v) (from the broker properties): \(why)") }
        }
        return out
    }

    func run() async throws {
        let logger = logOptions.bootstrap(label: "meridian.broker")
        let config: BrokerConfig
        do {
            let (c, ignored) = try resolvedConfig()
            config = c
            if !ignored.isEmpty {
                logger.notice("ignoring broker properties this broker does not use", metadata: ["properties": "\(ignored.joined(separator: ", "))"])
            }
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
        var metricsServer: MetricsHTTPServer?
        if let address = try metrics ?? topologyMetricsAddress() {
            let (host, port) = try MirrorCommand.hostPort(address)
            let m = BrokerMetrics(broker: broker)
            do {
                metricsServer = try await MetricsHTTPServer(host: host, port: port, endpoints: [
                    "/metrics": .init(contentType: "text/plain; version=0.0.4; charset=utf-8") { Array(m.scrape().utf8) },
                ], group: group)
            } catch {
                broker.logs.closeAll()
                try? await group.shutdownGracefully()
                throw ValidationError("cannot serve metrics on \(address): \(error); pick another --metrics address")
            }
            FileHandle.standardOutput.write(Data("metrics on http://\(host):\(metricsServer?.port ?? port)/metrics\n".utf8))
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
            await metricsServer?.close()
            broker.logs.closeAll()
            try? await group.shutdownGracefully()
            throw ExitCode(1)
        }
        await metricsServer?.close()
        try? await group.shutdownGracefully()
    }

    /// The "metrics" address of this broker in --topology, if it has one.
    func topologyMetricsAddress() throws -> String? {
        guard let topology, let regionName = region else { return nil }
        let topo = try Topology.load(path: topology)
        guard let r = topo.region(regionName) else { return nil }
        return (brokerId.flatMap { id in r.brokers.first { $0.id == id } } ?? (r.brokers.count == 1 ? r.brokers[0] : nil))?.metrics
    }
}

import LogStorage

enum LogConfigCheck {
    static func validate(_ k: String, _ v: String) -> String? { LogConfig.validate(k, v) }
}
