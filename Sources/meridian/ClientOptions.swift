import ArgumentParser
import Foundation
import KafkaClient
import KafkaWire
import NIOCore
import NIOPosix
import Topology

/// How the client commands find and reach a cluster.
struct ClientOptions: ParsableArguments {
    @Option(help: "Brokers to start from: HOST:PORT[,HOST:PORT...]. Default 127.0.0.1:9092.")
    var bootstrap: String?

    @Option(help: "topology.json to take the region's brokers (and TLS CA) from, with --region.")
    var topology: String?

    @Option(help: "Region of --topology to talk to.")
    var region: String?

    @Option(help: "PEM CA bundle to verify the brokers' certificates; turns on TLS.")
    var tlsCA: String?

    @Option(help: "PEM client certificate for mTLS.")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert.")
    var tlsKey: String?

    @Flag(help: "Do not check that the broker certificate names the host (testing only).")
    var noVerifyHostname = false

    func resolve() throws -> ([BootstrapAddress], TLSSettings?) {
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
        if let bootstrap { addresses = try BootstrapAddress.parseList(bootstrap) }
        if addresses.isEmpty { addresses = [BootstrapAddress(host: "127.0.0.1", port: 9092)] }
        if tlsCA != nil || tlsCert != nil {
            tls = TLSSettings(certificatePath: tlsCert, keyPath: tlsKey, caPath: tlsCA ?? tls?.caPath)
        }
        if noVerifyHostname { tls?.verifyHostname = false }
        return (addresses, tls)
    }

    /// Runs `body` with a connected cluster and closes it afterwards.
    func withCluster<T>(clientID: String = "meridian-cli", _ body: (KafkaCluster) async throws -> T) async throws -> T {
        let (addresses, tls) = try resolve()
        var options = KafkaCluster.Options()
        options.clientID = clientID
        options.tls = tls
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let cluster = KafkaCluster(bootstrap: addresses, options: options, group: group)
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
