import ArgumentParser
import KafkaClient
import Mirror
import NIOPosix
import Topology

/// Connects to a flow's source (as the mirror does, with its client certificate under TLS) and
/// target clusters, runs `body`, and closes both whatever happens. A region that does not answer
/// fails within `retryTimeout`.
func withFlowClusters<T: Sendable>(_ flow: Topology.Flow, topology: Topology, base: String, retryTimeout: Duration = .seconds(10),
                                   _ body: (_ source: KafkaCluster, _ target: KafkaCluster) async throws -> T) async throws -> T {
    let elg = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let result: Result<T, Error>
    do {
        let cert = flow.tls ? RegionEndpoint.mirrorCertificate(for: flow, in: topology, base: base) : nil
        let s = try RegionEndpoint.resolve(topology, region: flow.source, tls: flow.tls, clientCert: cert?.cert, clientKey: cert?.key, base: base)
        let t = try RegionEndpoint.resolveTarget(topology, region: flow.target, base: base)
        var so = KafkaCluster.Options(), to = KafkaCluster.Options()
        so.tls = s.tls
        to.tls = t.tls
        so.retryTimeout = retryTimeout
        to.retryTimeout = retryTimeout
        so.onConnectionEvent = reportConnectionEvents(flag: "--timeout")
        to.onConnectionEvent = reportConnectionEvents(flag: "--timeout")
        let source = KafkaCluster(bootstrap: s.addresses, options: so, group: elg)
        let target = KafkaCluster(bootstrap: t.addresses, options: to, group: elg)
        do {
            result = .success(try await body(source, target))
        } catch {
            result = .failure(error)
        }
        await source.close()
        await target.close()
    } catch let e as MirrorError {
        result = .failure(ValidationError(e.description))
    } catch {
        result = .failure(error)
    }
    try? await elg.shutdownGracefully()
    return try result.get()
}

/// `--timeout SECONDS` as a retry timeout, checked (a huge or negative value would trap converting).
func clusterTimeout(_ seconds: Double) throws -> Duration {
    guard seconds > 0, seconds <= 86_400 else { throw ValidationError("--timeout must be between 0 and 86400 seconds, got \(seconds)") }
    return .milliseconds(Int64(seconds * 1000))
}
