import ArgumentParser
import Foundation
import KafkaClient
import KafkaProtocol
import KafkaWire
import NIOCore
import NIOPosix
import Topology

/// How the client commands find and reach a cluster, in kcat's and Kafka's dialect: `-b` /
/// `--bootstrap-server` and `-X key=value` with librdkafka/Java client property names.
struct ClientOptions: ParsableArguments {
    @Option(name: [.customShort("b"), .customLong("bootstrap-server"), .customLong("bootstrap")],
            help: ArgumentHelp("Brokers to start from: HOST:PORT[,HOST:PORT...] (as kcat -b, Kafka's --bootstrap-server). Default 127.0.0.1:9092.",
                               valueName: "host:port"))
    var bootstrap: String?

    @Option(name: .customShort("X"),
            help: ArgumentHelp("""
                Client property with librdkafka/Java names; repeatable. Connection: bootstrap.servers, client.id, \
                security.protocol (PLAINTEXT, SSL), ssl.ca.location, ssl.certificate.location, ssl.key.location, \
                ssl.endpoint.identification.algorithm (none to skip the host name check), request.timeout.ms, \
                socket.connection.setup.timeout.ms, metadata.max.age.ms. Producer: acks, compression.type, linger.ms, \
                batch.size, enable.idempotence, partitioner, delivery.timeout.ms, retry.backoff.ms, buffer.memory, \
                max.in.flight.requests.per.connection. Consumer: group.id, group.instance.id, auto.offset.reset, \
                enable.auto.commit, auto.commit.interval.ms, session.timeout.ms, heartbeat.interval.ms, \
                max.poll.interval.ms, fetch.max.wait.ms, fetch.min.bytes, fetch.max.bytes, max.partition.fetch.bytes, \
                partition.assignment.strategy, check.crcs. Others are reported and ignored.
                """, valueName: "key=value"))
    var properties: [String] = []

    @Option(help: "topology.json to take the region's brokers (and TLS CA) from, with --region.")
    var topology: String?

    @Option(help: "Region of --topology to talk to.")
    var region: String?

    @Option(help: "PEM CA bundle to verify the brokers' certificates; turns on TLS (-X ssl.ca.location).")
    var tlsCA: String?

    @Option(help: "PEM client certificate for mTLS (-X ssl.certificate.location).")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert (-X ssl.key.location).")
    var tlsKey: String?

    @Flag(help: "Do not check that the broker certificate names the host (testing only; -X ssl.endpoint.identification.algorithm=none).")
    var noVerifyHostname = false

    @Option(name: [.customShort("m"), .customLong("timeout")],
            help: ArgumentHelp("Seconds to keep trying to reach the cluster, and to retry a failed request, before giving up with an error (as kcat's -m). A broker that cannot be reached is reported at once.",
                               valueName: "seconds"))
    var timeout: Double = 30

    /// Where and how to connect, resolved from flags, -X properties and topology.json.
    struct Connection {
        var addresses: [BootstrapAddress]
        var options: KafkaCluster.Options
    }

    /// The -X properties as given.
    func clientProperties() throws -> KafkaProperties {
        try KafkaProperties(pairs: properties, flag: "-X")
    }

    /// Resolves the connection, taking the connection properties out of `props`.
    func resolve(_ props: inout KafkaProperties, clientID: String) throws -> Connection {
        var addresses: [BootstrapAddress] = []
        var tls: TLSSettings? = nil
        if let topology {
            let topo = try Topology.load(path: topology)
            guard let name = region else { throw ValidationError("--topology needs --region NAME") }
            guard let r = topo.region(name) else {
                throw ValidationError("region '\(name)' is not in \(topology); it has: \(topo.regions.map(\.name).joined(separator: ", "))")
            }
            let base = (topology as NSString).deletingLastPathComponent
            let wantTLS = tlsCA != nil
            for b in r.brokers {
                let listeners = try b.listeners.map { try ListenerAddress(parsing: $0) }
                guard let l = listeners.first(where: { $0.isTLS == wantTLS }) ?? listeners.first(where: \.isTLS) else { continue }
                if l.isTLS && tls == nil {
                    let t = (b.tls ?? Topology.TLS()).overriding(r.tls)
                    tls = TLSSettings(caPath: t.ca.map { Topology.resolve($0, relativeTo: base) })
                }
                addresses.append(BootstrapAddress(host: l.host, port: l.port))
            }
            guard !addresses.isEmpty else { throw ValidationError("region '\(name)' has no listener to connect to") }
        }
        if let list = bootstrap ?? props.string("bootstrap.servers", "metadata.broker.list") {
            addresses = try BootstrapAddress.parseList(list)
        }
        if addresses.isEmpty { addresses = [BootstrapAddress(host: "127.0.0.1", port: 9092)] }
        // TLS: flags win over -X; -X ssl.* or security.protocol=SSL turn it on.
        let proto = try props.choice("security.protocol", among: ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
        if let proto, proto.hasPrefix("SASL") {
            throw ValidationError("security.protocol=\(proto): SASL is not supported; use PLAINTEXT or SSL (with client certificates for mTLS)")
        }
        let ca = tlsCA ?? props.string("ssl.ca.location") ?? pemStore(&props, "ssl.truststore")
        let keystore = pemStore(&props, "ssl.keystore")
        let cert = tlsCert ?? props.string("ssl.certificate.location") ?? keystore
        let key = tlsKey ?? props.string("ssl.key.location") ?? keystore
        if ca != nil || cert != nil || proto == "SSL" {
            tls = TLSSettings(certificatePath: cert, keyPath: key, caPath: ca ?? tls?.caPath)
        }
        if proto == "PLAINTEXT" { tls = nil }
        if let algorithm = props.string("ssl.endpoint.identification.algorithm") {
            tls?.verifyHostname = !(algorithm.isEmpty || algorithm.lowercased() == "none")
        }
        if noVerifyHostname { tls?.verifyHostname = false }
        var options = KafkaCluster.Options()
        options.clientID = props.string("client.id") ?? clientID
        options.tls = tls
        guard timeout > 0, timeout <= 86_400 else { throw ValidationError("--timeout must be between 0 and 86400 seconds, got \(timeout)") }
        options.retryTimeout = .milliseconds(Int64(timeout * 1000))
        options.onConnectionEvent = reportConnectionEvents(flag: "--timeout")
        options.connectTimeout = .milliseconds(Int64(min(10, timeout) * 1000))
        if let ms: Int64 = try props.number("socket.connection.setup.timeout.ms") { options.connectTimeout = .milliseconds(ms) }
        if let ms: Int64 = try props.number("metadata.max.age.ms", "topic.metadata.refresh.interval.ms") { options.metadataMaxAge = .milliseconds(ms) }
        if let ms: Int64 = try props.number("request.timeout.ms", "socket.timeout.ms") { options.requestTimeout = .milliseconds(ms) }
        return Connection(addresses: addresses, options: options)
    }

    /// A Java-style PEM key or trust store (`<prefix>.location` with `<prefix>.type=PEM`).
    private func pemStore(_ props: inout KafkaProperties, _ prefix: String) -> String? {
        guard let location = props.string(prefix + ".location") else { return nil }
        if let type = props.string(prefix + ".type"), type.uppercased() != "PEM" {
            printError("\(prefix).type=\(type) is not read here; give PEM files (-X ssl.ca.location, ssl.certificate.location, ssl.key.location)")
            return nil
        }
        return location
    }

    /// Says once, on standard error, which -X properties this command did not use.
    static func reportIgnored(_ props: KafkaProperties) {
        if !props.ignored.isEmpty {
            printError("ignoring -X properties this command does not use: \(props.ignored.joined(separator: ", "))")
        }
    }

    /// Runs `body` with a connected cluster and closes it afterwards.
    func withCluster<T>(_ connection: Connection, _ body: (KafkaCluster) async throws -> T) async throws -> T {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let cluster = KafkaCluster(bootstrap: connection.addresses, options: connection.options, group: group)
        do {
            let r = try await body(cluster)
            await cluster.close()
            try? await group.shutdownGracefully()
            return r
        } catch {
            await cluster.close()
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Runs `body` with a connected cluster, for commands that take only connection properties.
    func withCluster<T>(clientID: String = "meridian-cli", _ body: (KafkaCluster) async throws -> T) async throws -> T {
        var props = try clientProperties()
        let connection = try resolve(&props, clientID: clientID)
        Self.reportIgnored(props)
        return try await withCluster(connection, body)
    }
}

extension ProducerConfig {
    /// Takes the producer properties (Java and librdkafka names) out of `props`.
    mutating func apply(_ props: inout KafkaProperties) throws {
        if let a = try props.choice("acks", "request.required.acks", among: ["all", "-1", "1", "0"]) {
            acks = a == "all" ? -1 : Int16(a)!
        }
        if let c = props.string("compression.type", "compression.codec") {
            guard let codec = CompressionCodec(name: c), codec.isSupportedLocally else {
                throw ValidationError("compression.type=\(c): this producer writes none or gzip")
            }
            compression = codec
        }
        if let ms: Int64 = try props.number("linger.ms", "queue.buffering.max.ms") { lingerMs = ms }
        if let n: Int = try props.number("batch.size") { batchSize = n }
        if let i = try props.bool("enable.idempotence") { enableIdempotence = i }
        if let name = props.string("partitioner") {
            guard let p = Partitioner(name: name) else { throw ValidationError("partitioner=\(name): use murmur2 or consistent_random") }
            partitioner = p
        }
        if let ms: Int64 = try props.number("delivery.timeout.ms", "message.timeout.ms") { deliveryTimeoutMs = ms }
        if let ms: Int64 = try props.number("retry.backoff.ms") { retryBackoffMs = ms }
        if let n: Int = try props.number("buffer.memory") { bufferMemory = n }
        if let kb: Int = try props.number("queue.buffering.max.kbytes") {
            let (bytes, overflow) = kb.multipliedReportingOverflow(by: 1024)
            guard !overflow, kb > 0 else { throw ValidationError("queue.buffering.max.kbytes=\(kb) is out of range") }
            bufferMemory = bytes
        }
        if let n: Int = try props.number("max.in.flight.requests.per.connection", "max.in.flight") { maxInFlight = n }
        if let ms: Int32 = try props.number("request.timeout.ms") { requestTimeoutMs = ms }
    }
}

extension ConsumerConfig {
    /// Takes the consumer properties (Java and librdkafka names) out of `props`.
    mutating func apply(_ props: inout KafkaProperties) throws {
        if let g = props.string("group.id") { groupID = GroupID(g) }
        if let i = props.string("group.instance.id") { groupInstanceID = i }
        if let r = try props.choice("auto.offset.reset", among: ["earliest", "smallest", "beginning", "latest", "largest", "end", "none", "error"]) {
            switch r {
            case "earliest", "smallest", "beginning": autoOffsetReset = .earliest
            case "latest", "largest", "end": autoOffsetReset = .latest
            default: autoOffsetReset = .none
            }
        }
        if let b = try props.bool("enable.auto.commit") { enableAutoCommit = b }
        if let ms: Int64 = try props.number("auto.commit.interval.ms") { autoCommitIntervalMs = ms }
        if let ms: Int32 = try props.number("session.timeout.ms") { sessionTimeoutMs = ms }
        if let ms: Int64 = try props.number("heartbeat.interval.ms") { heartbeatIntervalMs = ms }
        if let ms: Int32 = try props.number("max.poll.interval.ms") { rebalanceTimeoutMs = ms }
        if let ms: Int32 = try props.number("fetch.max.wait.ms", "fetch.wait.max.ms") { fetchMaxWaitMs = ms }
        if let n: Int32 = try props.number("fetch.min.bytes") { fetchMinBytes = n }
        if let n: Int32 = try props.number("fetch.max.bytes") { fetchMaxBytes = n }
        if let n: Int32 = try props.number("max.partition.fetch.bytes", "fetch.message.max.bytes") { maxPartitionFetchBytes = n }
        if let b = try props.bool("check.crcs") { checkCRCs = b }
        if let s = props.string("partition.assignment.strategy") {
            let names = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            let known: [String: any PartitionAssignor] = ["range": RangeAssignor(), "cooperative-sticky": CooperativeStickyAssignor(),
                                                          "org.apache.kafka.clients.consumer.rangeassignor": RangeAssignor(),
                                                          "org.apache.kafka.clients.consumer.cooperativestickyassignor": CooperativeStickyAssignor()]
            let chosen = names.compactMap { known[$0] }
            guard !chosen.isEmpty else {
                throw ValidationError("partition.assignment.strategy=\(s): this consumer offers range and cooperative-sticky")
            }
            assignors = chosen
        }
    }
}

/// `--format text|json`, the one output switch of every command that prints data (`--json` is
/// an older spelling of `--format json`).
struct OutputFormat: ParsableArguments {
    enum Format: String, ExpressibleByArgument { case text, json }

    @Option(help: "text (a table for people) or json (one JSON object per line, for scripts).") var format: Format = .text
    @Flag(help: .hidden) var json = false

    var isJSON: Bool { format == .json || json }
}

/// Pads columns of a text table to their widest cell.
func formatTable(_ rows: [[String]]) -> String {
    guard let first = rows.first else { return "" }
    var widths = Array(repeating: 0, count: first.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    return rows.map { r in
        r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ")
    }.joined(separator: "\n")
}

/// Prints a JSON value (from dictionaries/arrays of plain values) on one line.
func printJSON(_ value: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
    say(String(decoding: data, as: UTF8.self))
}

/// Parses an ISO-8601 time (with or without fractional seconds or a zone; no zone means UTC).
func parseISO8601(_ text: String) -> Int64? {
    let f = ISO8601DateFormatter()
    for options: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime],
                                                  [.withFullDate, .withTime, .withColonSeparatorInTime]] {
        f.formatOptions = options
        if let d = f.date(from: text) { return Int64(d.timeIntervalSince1970 * 1000) }
        if let d = f.date(from: text + "Z") { return Int64(d.timeIntervalSince1970 * 1000) }
    }
    if let d = f.date(from: text + "T00:00:00Z") { return Int64(d.timeIntervalSince1970 * 1000) }
    return nil
}

/// Says on standard error, as it happens, that a broker cannot be reached (which address, why, that
/// the command keeps trying and for how long, and the flag that sets it) and when it answers again:
/// a command whose cluster is down must not sit silent for its whole timeout.
func reportConnectionEvents(flag: String) -> @Sendable (KafkaCluster.ConnectionEvent) -> Void {
    { event in
        switch event {
        case .failed(let address, let reason, let until):
            let left = until.map { max(0, ($0 - .now) / .seconds(1)) }
            let retry = left.map { String(format: "; still trying for %.0f s (%@ sets how long)", $0, flag) } ?? ""
            printError("cannot connect to \(address): \(reason)\(retry)")
        case .slow(let address, let waited, let until):
            let left = until.map { max(0, ($0 - .now) / .seconds(1)) }
            let retry = left.map { String(format: "; still trying for %.0f s (%@ sets how long)", $0, flag) } ?? ""
            printError(String(format: "no answer from %@ after %.0f s%@", address, waited / .seconds(1), retry))
        case .recovered(let address, let after):
            printError(String(format: "connected to %@ after %.1f s", address, after / .seconds(1)))
        }
    }
}
