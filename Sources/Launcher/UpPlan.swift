import Foundation
import Mirror
import Topology

/// What `meridian up` starts for a topology: every broker of the selected regions, and a mirror for
/// each selected region that flows copy into, with the remote brokers each mirror reads (what the
/// simulated WAN link sits in front of). Computed without starting anything.
public struct UpPlan: Sendable {
    public enum Kind: String, Sendable { case broker, mirror }

    public struct Child: Sendable, Equatable {
        public var name: String
        public var kind: Kind
        public var region: String
        /// Arguments of `meridian` (the same executable).
        public var arguments: [String]
        /// For a mirror: the source brokers it reaches across regions (`host:port`, as it connects).
        public var remoteBrokers: [String] = []
        /// For a mirror: where it serves /metrics, /lag and /history.
        public var metrics: String?
        /// For a mirror: its flows, as `name (source → target)`.
        public var flows: [String] = []
    }

    public var children: [Child]

    public var brokers: [Child] { children.filter { $0.kind == .broker } }
    public var mirrors: [Child] { children.filter { $0.kind == .mirror } }

    /// `topologyPath` is absolute; `only` names the regions to start (all when empty).
    public init(topology: Topology, topologyPath: String, only: [String], logLevel: String) throws {
        let base = (topologyPath as NSString).deletingLastPathComponent
        let selected = only.isEmpty ? topology.regions.map(\.name) : only
        for name in selected where topology.region(name) == nil {
            throw MirrorError.configuration("region '\(name)' is not in the topology; it has \(topology.regions.map(\.name).joined(separator: ", "))")
        }
        var children: [Child] = []
        for r in topology.regions where selected.contains(r.name) {
            for b in r.brokers {
                children.append(Child(name: "\(r.name)-broker-\(b.id)", kind: .broker, region: r.name,
                                      arguments: ["broker", "--topology", topologyPath, "--region", r.name, "--broker-id", "\(b.id)",
                                                  "--log-level", logLevel]))
            }
        }
        for r in topology.regions where selected.contains(r.name) {
            let flows = topology.flows.filter { $0.target == r.name }
            guard !flows.isEmpty else { continue }
            var remote: [String] = []
            for f in flows {
                let cert = f.tls ? RegionEndpoint.mirrorCertificate(for: f, in: topology, base: base) : nil
                let endpoint = try RegionEndpoint.resolve(topology, region: f.source, tls: f.tls, clientCert: cert?.cert, clientKey: cert?.key, base: base)
                for a in endpoint.addresses where !remote.contains("\(a.host):\(a.port)") { remote.append("\(a.host):\(a.port)") }
            }
            let metrics = r.mirrorMetrics ?? "127.0.0.1:0"
            children.append(Child(name: "\(r.name)-mirror", kind: .mirror, region: r.name,
                                  arguments: ["mirror", "--topology", topologyPath, "--region", r.name, "--metrics", metrics, "--log-level", logLevel],
                                  remoteBrokers: remote, metrics: metrics, flows: flows.map { "\($0.name) (\($0.source) → \($0.target))" }))
        }
        self.children = children
    }
}
