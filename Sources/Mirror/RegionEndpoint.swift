import Foundation
import KafkaClient
import KafkaWire
import Topology

/// How to reach a region of topology.json as a client: its bootstrap addresses and TLS settings.
public struct RegionEndpoint: Sendable, Equatable {
    public var addresses: [BootstrapAddress]
    public var tls: TLSSettings?

    /// The region's listeners (SSL ones when `tls`), or its `bootstrap` list for a cluster Meridian
    /// does not run. With TLS the region's CA verifies the brokers and, when given, `clientCert` /
    /// `clientKey` are presented for mTLS. Relative paths are resolved against `base`.
    public static func resolve(_ topology: Topology, region name: String, tls: Bool, clientCert: String? = nil,
                               clientKey: String? = nil, base: String) throws -> RegionEndpoint {
        guard let r = topology.region(name) else {
            throw MirrorError.configuration("region '\(name)' is not in the topology; it has \(topology.regions.map(\.name).joined(separator: ", "))")
        }
        var addresses: [BootstrapAddress] = []
        if let list = r.bootstrap {
            addresses = try BootstrapAddress.parseList(list.joined(separator: ","))
        } else {
            for b in r.brokers {
                let listeners = try b.listeners.map { try ListenerAddress(parsing: $0) }
                if let l = listeners.first(where: { $0.isTLS == tls }) {
                    addresses.append(BootstrapAddress(host: l.host, port: l.port))
                }
            }
        }
        guard !addresses.isEmpty else {
            throw MirrorError.configuration("region '\(name)' has no \(tls ? "SSL" : "PLAINTEXT") listener to connect to; add one or change the flow's \"tls\"")
        }
        guard tls else { return RegionEndpoint(addresses: addresses, tls: nil) }
        let ca = r.tls?.ca.map { Topology.resolve($0, relativeTo: base) }
        var settings = TLSSettings(certificatePath: clientCert.map { Topology.resolve($0, relativeTo: base) },
                                   keyPath: clientKey.map { Topology.resolve($0, relativeTo: base) }, caPath: ca)
        for path in [settings.caPath, settings.certificatePath, settings.keyPath].compactMap({ $0 }) where !FileManager.default.fileExists(atPath: path) {
            throw MirrorError.configuration("TLS file \(path) for region '\(name)' does not exist; run deploy/make-certs.sh or fix the path in the topology")
        }
        settings.verifyHostname = true
        return RegionEndpoint(addresses: addresses, tls: settings)
    }

    /// How the mirror of `region` reaches that region's own cluster (where it writes). A region
    /// Meridian runs is reached on a PLAINTEXT listener when a broker has one, else on its SSL
    /// listeners; a `bootstrap` region over TLS when its `tls` gives a CA. With TLS the region's
    /// CA verifies the brokers and `mirror-<region>.pem` / `.key` next to it, when both exist
    /// (deploy/make-certs.sh makes them), are presented for mTLS.
    public static func resolveTarget(_ topology: Topology, region name: String, base: String) throws -> RegionEndpoint {
        guard let r = topology.region(name) else {
            throw MirrorError.configuration("region '\(name)' is not in the topology; it has \(topology.regions.map(\.name).joined(separator: ", "))")
        }
        let plaintext: Bool
        if r.bootstrap != nil {
            plaintext = r.tls?.ca == nil
        } else {
            plaintext = try r.brokers.contains { b in try b.listeners.contains { try !ListenerAddress(parsing: $0).isTLS } }
        }
        guard !plaintext else { return try resolve(topology, region: name, tls: false, base: base) }
        let cert = mirrorCertificate(name, nextTo: r.tls?.ca, base: base)
        return try resolve(topology, region: name, tls: true, clientCert: cert?.cert, clientKey: cert?.key, base: base)
    }

    /// The mirror's client certificate for `flow`: the flow's own, else `mirror-<target>.pem` /
    /// `.key` next to the source region's CA when both files exist.
    public static func mirrorCertificate(for flow: Topology.Flow, in topology: Topology, base: String) -> (cert: String, key: String)? {
        if let c = flow.clientCert, let k = flow.clientKey { return (c, k) }
        return mirrorCertificate(flow.target, nextTo: topology.region(flow.source)?.tls?.ca, base: base)
    }

    /// `mirror-<region>.pem` / `.key` next to `ca`, when both exist.
    static func mirrorCertificate(_ region: String, nextTo ca: String?, base: String) -> (cert: String, key: String)? {
        guard let ca else { return nil }
        let dir = (Topology.resolve(ca, relativeTo: base) as NSString).deletingLastPathComponent
        let cert = "\(dir)/mirror-\(region).pem", key = "\(dir)/mirror-\(region).key"
        guard FileManager.default.fileExists(atPath: cert), FileManager.default.fileExists(atPath: key) else { return nil }
        return (cert, key)
    }
}
