import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import KafkaClient
import KafkaProtocol
import KafkaWire
import LinkSimulator
import Logging
import MetricsHTTP
import Mirror
import NIOConcurrencyHelpers
import Testing
import TestSupport
import Topology

/// A clock the test moves by hand, in milliseconds since the epoch, starting at the real time
/// (records get the real time as their timestamps).
final class HandClock: Sendable {
    private let ms = NIOLockedValueBox<Int64>(Int64(Date().timeIntervalSince1970 * 1000))
    var now: Int64 { ms.withLockedValue { $0 } }
    func advance(_ by: Int64) { ms.withLockedValue { $0 += by } }
}

@Suite("Mirror lag tracking", .timeLimit(.minutes(2)))
struct LagTrackingTests {
    @Test func lagInRecordsAndSecondsGrowsWhileTheTargetHangsAndReturnsToZero() async throws {
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        try await KafkaAdmin(cluster: cluster(us)).createTopic("orders", partitions: 1)
        try await produce(us, "orders", count: 100)
        // The mirror reaches the target only through this link.
        let link = try TCPProxy(targetHost: "127.0.0.1", targetPort: eu.port, group: mirrorTestLoops)
        defer { link.close() }
        eu.server.broker.advertisedListeners = [try ListenerAddress(parsing: "PLAINTEXT://127.0.0.1:\(link.port)")]
        let clock = HandClock()
        var settings = quickSettings()
        settings.heartbeatInterval = .zero
        settings.stallAfter = .seconds(10)
        settings.clock = { clock.now }
        let source = cluster(us)
        let target = KafkaCluster(bootstrap: [BootstrapAddress(host: "127.0.0.1", port: link.port)], group: mirrorTestLoops)
        let flow = Topology.Flow(name: "us-to-eu", source: "us-east", target: "eu-west", topics: .init(include: ["orders"], exclude: []))
        let mirror = try FlowMirror(flow: flow, regions: ["us-east", "eu-west"], source: source, target: target, settings: settings,
                                    logger: Logger(label: "lag-test"))
        let task = Task { try? await mirror.run() }
        func row() -> PartitionLagStatus? { mirror.lagStatus().first }

        #expect(await eventually(30) { row()?.copiedNext == 100 })
        var r = try #require(row())
        #expect(r.lagRecords == 0 && r.lagMs == 0 && r.state == .running)
        #expect(r.copiedRecords == 100 && r.transferP50Ms != nil)

        // The link to the target hangs: new records are fetched but not written.
        link.setDelay(.seconds(3600))
        try await produce(us, "orders", count: 50, from: 100)
        #expect(await eventually(30) { row()?.lagRecords == 50 })
        clock.advance(15_000)
        r = try #require(row())
        #expect(r.state == .stalled, "\(r)")
        #expect(r.lagMs >= 15_000 && r.lagMs < 60_000, "dated by the oldest waiting record: \(r.lagMs) ms")
        clock.advance(5_000)
        #expect(try #require(row()).lagMs >= 20_000, "and it keeps growing")

        // The link comes back: everything is copied, lag returns to zero.
        link.setDelay(.zero)
        link.cutAll()
        #expect(await eventually(60) { row()?.copiedNext == 150 })
        r = try #require(row())
        #expect(r.lagRecords == 0 && r.lagMs == 0 && r.state == .running, "\(r)")
        task.cancel()
        await task.value
        await source.close()
        await target.close()
        for x in b { await x.stop() }
    }

    @Test func metricsAndLagAreServedOverHTTP() async throws {
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        try await KafkaAdmin(cluster: cluster(us)).createTopic("orders", partitions: 2)
        try await produce(us, "orders", count: 200)
        var settings = quickSettings()
        settings.heartbeatInterval = .milliseconds(200)
        let m = try RunningMirror(Topology.Flow(name: "us-to-eu", source: "us-east", target: "eu-west",
                                                topics: .init(include: ["orders"], exclude: [])), from: us, to: eu, settings: settings)
        let flows = [m.mirror]
        let metrics = MirrorMetrics { flows }
        let server = try await MetricsHTTPServer(host: "127.0.0.1", port: 0, endpoints: [
            "/metrics": .init(contentType: "text/plain; version=0.0.4; charset=utf-8") { Array(metrics.scrape().utf8) },
            "/lag": .init(contentType: "application/json") { Array(try metrics.lagJSON()) },
        ], group: mirrorTestLoops)
        let orders = { m.mirror.lagStatus().filter { $0.source.topic == "orders" } }
        #expect(await eventually(30) { orders().reduce(0) { $0 + $1.copiedRecords } == 200 })
        // The source's heartbeats cross the flow: their age is the link's delay, well under the 10 s here.
        #expect(await eventually(30) { (m.mirror.heartbeatAgeMs() ?? .max) < 10_000 })
        func get(_ path: String) async throws -> (Int, String) {
            let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(server.port)\(path)")!)
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
        }
        let (status, text) = try await get("/metrics")
        #expect(status == 200)
        // Every sample line is `name{labels} value` with a number; every family has HELP and TYPE.
        let samples = text.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }
        #expect(samples.allSatisfy { Double($0.split(separator: " ").last ?? "") != nil }, "\(text)")
        for name in ["meridian_mirror_lag_records", "meridian_mirror_lag_seconds", "meridian_mirror_copied_records_total",
                     "meridian_mirror_copied_offset", "meridian_mirror_partition_state", "meridian_mirror_transfer_seconds"] {
            #expect(text.contains("# TYPE \(name) "), "\(name) is exposed")
        }
        #expect(text.contains(#"meridian_mirror_heartbeat_age_seconds{flow="us-to-eu"} "#), "\(text)")
        let copied = samples.filter { $0.hasPrefix("meridian_mirror_copied_records_total{flow=\"us-to-eu\",topic=\"orders\"") }
            .compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
        #expect(copied == 200)
        #expect(text.contains(#"meridian_mirror_partition_state{flow="us-to-eu",topic="orders",partition="0",state="running"} 1"#), "\(text)")
        let (lagStatus, lag) = try await get("/lag")
        #expect(lagStatus == 200)
        let json = try JSONSerialization.jsonObject(with: Data(lag.utf8)) as? [String: Any]
        let rows = (json?["partitions"] as? [[String: Any]] ?? []).filter { $0["topic"] as? String == "orders" }
        #expect(rows.count == 2)
        let flowRows = json?["flows"] as? [[String: Any]] ?? []
        #expect(flowRows.count == 1 && flowRows.first?["name"] as? String == "us-to-eu" && flowRows.first?["heartbeatAgeSeconds"] is Double, "\(flowRows)")
        #expect(rows.allSatisfy { $0["lagRecords"] as? Int == 0 && $0["state"] as? String == "running" && $0["remoteTopic"] as? String == "us-east.orders" })
        #expect(try await get("/nothing").0 == 404)
        await server.close()
        await m.stop()
        for x in b { await x.stop() }
    }
}
