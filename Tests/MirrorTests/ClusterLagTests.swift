import Foundation
import KafkaClient
import KafkaProtocol
import Logging
@testable import Mirror
import NIOCore
import Testing
import TestSupport
import Topology

@Suite("Lag and failover RPO from the clusters", .timeLimit(.minutes(2)))
struct ClusterLagTests {
    let flow = Topology.Flow(name: "us-to-eu", source: "us-east", target: "eu-west", topics: .init(include: ["orders"], exclude: []))

    /// Lag and RPO as of `aheadMs` after now (the clock is the caller's: no waiting for records to age).
    func measure(_ us: InProcessBroker, _ eu: InProcessBroker, aheadMs: Int64 = 0) async throws -> ClusterLag.Snapshot {
        let s = cluster(us), t = cluster(eu)
        defer { Task { await s.close(); await t.close() } }
        return try await ClusterLag(flow: flow, regions: ["us-east", "eu-west"], source: s, target: t, logger: Logger(label: "lag-test"))
            .measure(nowMs: Int64(Date().timeIntervalSince1970 * 1000) + aheadMs, groups: true) { $0 ? "stalled" : "caught-up" }
    }

    /// Consumes `tp` as group `billing` from its committed offset until `count` records, commits, returns their values.
    func consume(_ b: InProcessBroker, _ tp: TopicPartition, count: Int, seconds: Double = 30) async throws -> [String] {
        let c = cluster(b)
        var config = ConsumerConfig()
        config.groupID = "billing"
        config.enableAutoCommit = false
        config.autoOffsetReset = .earliest
        let consumer = KafkaConsumer(cluster: c, config: config)
        consumer.assign([tp])
        var values: [String] = []
        let deadline = ContinuousClock.now + .seconds(seconds)
        while values.count < count && ContinuousClock.now < deadline {
            for r in try await consumer.poll(timeout: .milliseconds(200)) { values.append(r.value.map { String(buffer: $0) } ?? "") }
        }
        try await consumer.commit()
        await consumer.close()
        await c.close()
        return values
    }

    @Test func aGroupsRPOIsWhatItMissesWhenItFailsOverMidLag() async throws {
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        try await KafkaAdmin(cluster: cluster(us)).createTopic("orders", partitions: 1)
        try await produce(us, "orders", count: 50)
        let src = TopicPartition("orders", 0), dst = TopicPartition("us-east.orders", 0)
        var settings = quickSettings()
        settings.heartbeatInterval = .milliseconds(200)
        let m = try RunningMirror(flow, from: us, to: eu, settings: settings)
        #expect(await eventually(30) { await endOffsets(eu, "us-east.orders")[0] == 50 })

        // The group reads everything there is; the mirror syncs its offset: nothing to lose, nothing to re-read.
        #expect(try await consume(us, src, count: 50).count == 50)
        #expect(await eventually(30) { (try? await KafkaAdmin(cluster: cluster(eu)).groupOffsets("billing")[dst]) == 50 })
        #expect(await eventually(30) { (await endOffsets(eu, "us-east.heartbeats")[0] ?? 0) > 0 }, "a heartbeat crossed")
        var snap = try await measure(us, eu)
        var g = try #require(snap.groups.first { $0.group == "billing" })
        #expect(g.rpoRecords == 0 && g.rpoSeconds == 0 && g.reReads == 0 && g.translated == 50 && g.targetCommitted == 50, "\(g)")
        #expect(snap.rows.map(\.lagRecords) == [0] && snap.rows.first?.state == "caught-up", "\(snap.rows)")
        #expect(snap.heartbeatAgeSeconds.map { $0 < 30 } == true, "the source's heartbeats crossed: \(String(describing: snap.heartbeatAgeSeconds))")

        // The mirror stops; the source goes on and the group reads 20 more records there.
        await m.stop()
        try await produce(us, "orders", count: 20, from: 50)
        let ahead = try await consume(us, src, count: 20)
        #expect(ahead == (50..<70).map { "v-\($0)" })
        snap = try await measure(us, eu, aheadMs: 5_000)  // as seen 5 s from now
        g = try #require(snap.groups.first { $0.group == "billing" })
        #expect(snap.rows.first?.lagRecords == 20 && snap.rows.first?.state == "stalled", "\(snap.rows)")
        #expect((snap.rows.first?.lagSeconds ?? 0) >= 5, "the oldest uncopied record's age: \(snap.rows)")
        #expect(g.committed == 70 && g.rpoRecords == 20 && g.rpoSeconds >= 5, "\(g)")
        #expect(g.reReads == 0 && g.translated == 50 && g.targetCommitted == 50, "exact translation: no record read twice: \(g)")

        // Failing over now: in the target the group resumes where its offset was synced and finds
        // nothing more — exactly the 20 records the RPO named are what it misses.
        let afterFailover = try await consume(eu, dst, count: 1, seconds: 2)
        #expect(afterFailover.isEmpty, "\(afterFailover)")
        // When the mirror comes back, those 20 — and only those — arrive (delivered a second time).
        let again = try RunningMirror(flow, from: us, to: eu, settings: settings)
        #expect(await eventually(30) { await endOffsets(eu, "us-east.orders")[0] == 70 })
        // Read from the target partition itself: the restarted mirror may already have moved the
        // (memberless) group to 70 there, which is its job.
        let late = try await readPartition(eu, dst).filter { $0.offset >= 50 }.map { $0.value.map { String(buffer: $0) } ?? "" }
        #expect(late == ahead, "the records the RPO counted, in order")
        await again.stop()
    }
}

/// Offsets and timestamps from a cluster are wire values: the lag arithmetic never traps on them.
@Suite("Lag arithmetic on made-up values", .timeLimit(.minutes(1)))
struct LagArithmeticTests {
    @Test func gapsAndAgesOfExtremeValuesAreClampedNotTrapped() {
        #expect(ClusterLag.gap(10, 3) == 7)
        #expect(ClusterLag.gap(3, 10) == 0)
        #expect(ClusterLag.gap(.max, .min) == .max, "would overflow: the largest gap")
        #expect(ClusterLag.gap(.min, .max) == 0)
        #expect(ClusterLag.gap(.min, 1) == 0)
        #expect(ClusterLag.age(10_000, 4_000) == 6)
        #expect(ClusterLag.age(10_000, 20_000) == 0, "a timestamp in the future is 0 s old")
        #expect(ClusterLag.age(1_796_000_000_000, .min) > 0, "a timestamp of Int64.min is old, not a crash")
    }
}
