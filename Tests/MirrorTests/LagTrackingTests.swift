import Foundation
import KafkaClient
import KafkaProtocol
import KafkaWire
import LinkSimulator
import Logging
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
}
