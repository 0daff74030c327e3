import Foundation
import KafkaClient
import Logging
import NIOCore
import Topology

/// Everything one region's mirror runs: the flows of topology.json whose target is that region
/// (or one of them), each with its own source connection and one shared target connection.
public final class MirrorDaemon: Sendable {
    public let flows: [FlowMirror]
    let clusters: [KafkaCluster]
    let logger: Logger

    /// Builds the flows into `region` (only `flowName` when given). `base` is the topology file's
    /// directory, against which relative certificate paths resolve.
    public init(topology: Topology, base: String, region: String, flowName: String? = nil, settings: MirrorSettings = MirrorSettings(),
                group: EventLoopGroup, logger: Logger) throws {
        let problems = topology.validate()
        guard problems.isEmpty else {
            throw MirrorError.configuration("the topology has problems (see `meridian topology check`): " + problems.joined(separator: "; "))
        }
        guard topology.region(region) != nil else {
            throw MirrorError.configuration("region '\(region)' is not in the topology; it has \(topology.regions.map(\.name).joined(separator: ", "))")
        }
        var selected = topology.flows.filter { $0.target == region }
        if let flowName {
            guard let f = topology.flow(flowName) else {
                throw MirrorError.configuration("no flow named '\(flowName)'; flows: \(topology.flows.map(\.name).joined(separator: ", "))")
            }
            guard f.target == region else {
                throw MirrorError.configuration("flow '\(flowName)' copies into '\(f.target)', not '\(region)'; run it with --region \(f.target)")
            }
            selected = [f]
        }
        guard !selected.isEmpty else {
            throw MirrorError.configuration("no flow has '\(region)' as its target; add one to \"flows\" in the topology")
        }
        let targetEndpoint = try RegionEndpoint.resolveTarget(topology, region: region, base: base)
        var targetOptions = KafkaCluster.Options()
        targetOptions.clientID = "meridian-mirror-\(region)"
        targetOptions.tls = targetEndpoint.tls
        targetOptions.onConnectionEvent = Self.logConnectionEvents(logger, cluster: "target", region: region)
        let target = KafkaCluster(bootstrap: targetEndpoint.addresses, options: targetOptions, group: group)
        var clusters = [target]
        var flows: [FlowMirror] = []
        let regions = Set(topology.regions.map(\.name))
        for f in selected {
            let cert = f.tls ? RegionEndpoint.mirrorCertificate(for: f, in: topology, base: base) : nil
            let endpoint = try RegionEndpoint.resolve(topology, region: f.source, tls: f.tls, clientCert: cert?.cert, clientKey: cert?.key, base: base)
            var options = KafkaCluster.Options()
            options.clientID = "meridian-mirror-\(f.name)"
            options.tls = endpoint.tls
            options.routes = settings.sourceRoutes
            options.onConnectionEvent = Self.logConnectionEvents(logger, cluster: "source", region: f.source)
            let source = KafkaCluster(bootstrap: endpoint.addresses, options: options, group: group)
            clusters.append(source)
            var s = settings
            if let ms = f.groupSyncIntervalMs { s.groupSyncInterval = .milliseconds(ms) }
            flows.append(try FlowMirror(flow: f, regions: regions, source: source, target: target, settings: s, logger: logger))
        }
        self.flows = flows
        self.clusters = clusters
        self.logger = logger
    }

    /// Logs, as they happen, brokers of a flow's clusters that cannot be reached and reached again:
    /// a mirror whose source is down says so within seconds (and every 10 s while it lasts), not
    /// after an operation's retries ran out.
    static func logConnectionEvents(_ logger: Logger, cluster: String, region: String) -> @Sendable (KafkaCluster.ConnectionEvent) -> Void {
        { event in
            switch event {
            case .failed(let address, let reason, _):
                logger.warning("cannot connect to a \(cluster) broker; retrying", metadata: ["region": "\(region)", "broker": "\(address)", "error": "\(reason)"])
            case .slow(let address, let waited, _):
                logger.warning("no answer yet from a \(cluster) broker; still connecting", metadata: ["region": "\(region)", "broker": "\(address)",
                                                                                                       "waited": "\(waited)"])
            case .recovered(let address, let after):
                logger.notice("connected to the \(cluster) broker again", metadata: ["region": "\(region)", "broker": "\(address)", "after": "\(after)"])
            }
        }
    }

    /// Runs every flow until cancelled, then closes the connections.
    public func run() async {
        await withDiscardingTaskGroup { group in
            for f in flows {
                group.addTask {
                    do { try await f.run() } catch {
                        if !Task.isCancelled { self.logger.error("flow failed", metadata: ["flow": "\(f.flow.name)", "error": "\(error)"]) }
                    }
                }
            }
        }
        for c in clusters { await c.close() }
    }
}
