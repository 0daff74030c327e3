import ArgumentParser
import Foundation
import KafkaClient
import KafkaProtocol
import Logging
import MetricsHTTP
import Mirror
import NIOPosix
import ServiceLifecycle
import Topology

struct MirrorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mirror",
        abstract: "Copy topics from other regions into this one, with exact offset translation.",
        discussion: """
            Runs every flow of topology.json whose target is --region (or only --flow): selected
            topics of the source region are copied into this region's cluster (remote topics are
            created with the source's partitions and configs), the exact source → target offset
            mapping is kept in the topic meridian.offset-map.internal of this region, and committed
            group offsets are translated into this region every few seconds for groups with no
            active members here. Safe to kill at any moment: a restart neither duplicates nor skips.
            Stops cleanly on SIGTERM or Ctrl-C (exit status 0).

            Examples:
              meridian mirror --topology topology.json --region eu-west
              meridian mirror --topology topology.json --region eu-west --flow us-to-eu --log-level debug
              meridian mirror --topology topology.json --region eu-west --instance-id eu-mirror-1   (and -2 on another host)
            """
    )

    @Option(help: "Path of the topology file.")
    var topology: String = "topology.json"

    @Option(help: "This mirror's region: flows whose target it is are run.")
    var region: String

    @Option(help: "Run only this flow.")
    var flow: String?

    @Option(help: ArgumentHelp("""
        Share the flows with other mirror processes: each joins the source-side group \
        meridian-mirror.<flow> under this id (a static member, so a restart gets its partitions back) \
        and copies the partitions the group assigns it; a process that dies loses its partitions to \
        the others after the session timeout. Give every process of a flow its own id.
        """, valueName: "id"))
    var instanceID: String?

    @Option(help: ArgumentHelp("""
        Serve Prometheus metrics at http://HOST:PORT/metrics and the lag of every partition as JSON at \
        /lag (what `meridian lag` reads). Default: the region's "mirrorMetrics" in topology.json. Port 0 \
        picks a free one, printed at start.
        """, valueName: "host:port"))
    var metrics: String?

    @Option(help: ArgumentHelp("""
        Keep the lag history (served at /history, charted by `meridian lag report`) in this file too, \
        one line per sample, so a restarted mirror keeps its charts.
        """, valueName: "path"))
    var historyFile: String?

    @Option(help: "Seconds between two points of the lag history (kept for 24 h at the default 10).")
    var historyInterval: Double = 10

    @Option(name: .customLong("route"), help: ArgumentHelp("""
        Reach the source broker HOST:PORT through VIA_HOST:VIA_PORT instead (a tunnel, a NAT, or the \
        simulated WAN link of `meridian up --wan-latency`); TLS still verifies the broker's name. Repeatable.
        """, valueName: "host:port=via-host:via-port"))
    var routes: [String] = []

    @Option(help: .hidden)
    var memberSessionTimeoutMs: Int32 = 10_000

    @Option(help: .hidden)
    var producesInFlight: Int = MirrorSettings().producesInFlight

    @Option(help: .hidden)
    var partitionFetchBytes: Int32 = MirrorSettings().partitionFetchBytes

    @OptionGroup var log: LogOptions

    func validate() throws {
        guard historyInterval >= 0.01, historyInterval <= 86_400 else { throw ValidationError("--history-interval wants 0.01 to 86400 seconds") }
    }

    func run() async throws {
        let topo = try Topology.load(path: topology)
        let base = (topology as NSString).deletingLastPathComponent
        let logger = log.bootstrap(label: "meridian.mirror")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let daemon: MirrorDaemon
        do {
            var settings = MirrorSettings()
            settings.groupInstanceID = instanceID
            settings.memberSessionTimeoutMs = memberSessionTimeoutMs
            settings.producesInFlight = producesInFlight
            settings.partitionFetchBytes = partitionFetchBytes
            for r in routes {
                let parts = r.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let via = try? BootstrapAddress.parseList(parts[1]).first, (try? BootstrapAddress.parseList(parts[0]).count) == 1 else {
                    throw ValidationError("--route wants HOST:PORT=VIA_HOST:VIA_PORT, e.g. 10.0.0.5:9092=127.0.0.1:19092 (got '\(r)')")
                }
                settings.sourceRoutes[parts[0]] = via
            }
            daemon = try MirrorDaemon(topology: topo, base: base, region: region, flowName: flow, settings: settings, group: group, logger: logger)
        } catch let e as MirrorError {
            try? await group.shutdownGracefully()
            throw ValidationError(e.description)
        }
        var server: MetricsHTTPServer?
        let recorder: LagHistoryRecorder
        do {
            recorder = try LagHistoryRecorder(capacity: max(1, Int((86_400 / historyInterval).rounded())), file: historyFile)
        } catch let e as MirrorError {
            try? await group.shutdownGracefully()
            throw ValidationError(e.description)
        }
        let flows = daemon.flows
        let m = MirrorMetrics { flows }
        let interval = historyInterval
        let sampler = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
                recorder.record(now: Int64((Date().timeIntervalSince1970 * 1000).rounded()), rows: m.lagRows())
            }
        }
        defer { sampler.cancel() }
        if let metrics = metrics ?? topo.region(region)?.mirrorMetrics {
            let (host, port) = try Self.hostPort(metrics)
            do {
                server = try await MetricsHTTPServer(host: host, port: port, endpoints: [
                    "/metrics": .init(contentType: "text/plain; version=0.0.4; charset=utf-8") { Array(m.scrape().utf8) },
                    "/lag": .init(contentType: "application/json") { Array(try m.lagJSON()) },
                    "/history": .init(contentType: "application/json") { Array(try recorder.snapshot.encode()) },
                ], group: group)
            } catch {
                try? await group.shutdownGracefully()
                throw ValidationError("cannot serve metrics on \(metrics): \(error); pick another --metrics address")
            }
            say("mirror \(region): metrics on http://\(host):\(server?.port ?? port)/metrics, lag on /lag, history on /history")
        }
        // Said once everything it serves is up: `meridian up` takes this line as "ready".
        say("mirror \(region): running \(daemon.flows.map { "\($0.flow.name) (\($0.flow.source) → \($0.flow.target))" }.joined(separator: ", "))")
        let services = ServiceGroup(configuration: .init(
            services: [.init(service: MirrorService(daemon: daemon), successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await services.run()
        await server?.close()
        try? await group.shutdownGracefully()
        say("mirror \(region): stopped")
    }

    static func hostPort(_ s: String) throws -> (String, Int) {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--metrics wants HOST:PORT, e.g. 127.0.0.1:9644 (got '\(s)')")
        }
        let host = String(s[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }
}

/// The mirror daemon as a service: cancelled on graceful shutdown, after which flows finish the
/// writes in progress and close their connections.
struct MirrorService: Service {
    let daemon: MirrorDaemon
    func run() async throws {
        await cancelWhenGracefulShutdown { await daemon.run() }
    }
}

struct OffsetsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "offsets",
        abstract: "Offsets across regions.",
        subcommands: [Translate.self]
    )

    struct Translate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Translate a group's committed source offsets into the target of a flow.",
            discussion: """
                Prints, per partition, the group's committed offset in the flow's source region and the
                exact offset of the same position in the target region — where the group would resume
                if it failed over now — read from the mapping the mirror keeps in the target.

                Examples:
                  meridian offsets translate --topology topology.json --flow us-to-eu --group billing
                  meridian offsets translate --topology topology.json --flow us-to-eu --group billing --topic orders --format json
                """
        )

        @Option(help: "Path of the topology file.")
        var topology: String = "topology.json"

        @Option(help: "The flow whose source and target are translated between.")
        var flow: String

        @Option(help: "Consumer group (its offsets in the flow's source region).")
        var group: String

        @Option(help: "Only this source topic.")
        var topic: String?

        @Option(name: [.customShort("m"), .customLong("timeout")],
                help: ArgumentHelp("Seconds to keep trying to reach each cluster before giving up; a broker that cannot be reached is reported at once.", valueName: "seconds"))
        var timeout: Double = 10

        @OptionGroup var output: OutputFormat

        func run() async throws {
            let topo = try Topology.load(path: topology)
            let base = (topology as NSString).deletingLastPathComponent
            guard let f = topo.flow(flow) else {
                throw ValidationError("no flow named '\(flow)' in \(topology); flows: \(topo.flows.map(\.name).joined(separator: ", "))")
            }
            let rows = try await withFlowClusters(f, topology: topo, base: base, retryTimeout: try clusterTimeout(timeout)) { source, target in
                try await OffsetTranslator.translate(group: GroupID(group), flow: f.name, topic: topic.map { TopicName($0) },
                                                     source: source, target: target, logger: Logger(label: "meridian.offsets"))
            }
            if output.isJSON {
                for r in rows {
                    var o: [String: Any] = ["topic": r.source.topic.rawValue, "partition": Int(r.source.partition), "sourceOffset": Int(r.committed)]
                    if let t = r.target { o["targetTopic"] = t.topic.rawValue }
                    if let x = r.translated { o["targetOffset"] = Int(x) }
                    if let n = r.notYetCopied { o["notYetCopied"] = Int(n) }
                    try printJSON(o)
                }
                return
            }
            if rows.isEmpty { say("group \(group) has no committed offsets\(topic.map { " for \($0)" } ?? "") in \(f.source)"); return }
            say(formatTable([["TOPIC", "PARTITION", "SOURCE-OFFSET", "TARGET-TOPIC", "TARGET-OFFSET", "NOT-YET-COPIED"]] + rows.map { r in
                [r.source.topic.rawValue, "\(r.source.partition)", "\(r.committed)", r.target?.topic.rawValue ?? "-",
                 r.translated.map(String.init) ?? "- (not mirrored)", r.notYetCopied.map(String.init) ?? "-"]
            }))
        }
    }
}
