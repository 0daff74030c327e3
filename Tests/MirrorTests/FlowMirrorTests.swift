import Foundation
import KafkaClient
import KafkaProtocol
import Mirror
import NIOCore
import Testing
import TestSupport
import Topology

/// Flows between two in-process brokers standing for two regions.
@Suite("Mirror flows", .timeLimit(.minutes(3)))
struct FlowMirrorTests {
    let usToEu = Topology.Flow(name: "us-to-eu", source: "us-east", target: "eu-west",
                               topics: .init(include: ["orders.*"], exclude: [".*\\.internal"]))

    /// Waits until every partition of `remote` in the target ends where `topic` ends in the source.
    func caughtUp(_ s: InProcessBroker, _ t: InProcessBroker, _ topic: TopicName, _ remote: TopicName, seconds: Double = 60) async -> Bool {
        await eventually(seconds) {
            let src = await endOffsets(s, topic)
            let dst = await endOffsets(t, remote)
            return !src.isEmpty && src == dst
        }
    }

    @Test func recordsAreCopiedExactlyAndOffsetsTranslate() async throws {
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        let admin = KafkaAdmin(cluster: cluster(us))
        try await admin.createTopic("orders", partitions: 3, configs: ["retention.ms": "86400000", "max.message.bytes": "2000000"])
        try await produce(us, "orders", count: 3_000)
        try await produce(us, "orders", count: 1_000, from: 3_000, compression: .gzip)
        try await admin.createTopic("other", partitions: 1)
        try await produce(us, "other", count: 10)
        let m = try RunningMirror(usToEu, from: us, to: eu)

        #expect(await caughtUp(us, eu, "orders", "us-east.orders"))
        for p: Int32 in 0..<3 {
            let src = try await readPartition(us, TopicPartition("orders", p))
            let dst = try await readPartition(eu, TopicPartition("us-east.orders", p))
            #expect(difference(src, dst) == nil, "partition \(p): key, value, headers and timestamp equal, in order")
            #expect(src.map(\.offset) == dst.map(\.offset), "no gaps in the source: offsets line up one to one")
        }
        #expect(await endOffsets(eu, "us-east.other").isEmpty, "topics outside the selection are not copied")
        let remoteConfigs = try await KafkaAdmin(cluster: cluster(eu)).describeTopicConfigs("us-east.orders")
        #expect(remoteConfigs.first { $0.name == "retention.ms" }?.value == "86400000", "the source's topic configs come along")
        #expect(remoteConfigs.first { $0.name == "max.message.bytes" }?.value == "2000000")

        // A group that consumed part of the source gets the exact target offsets.
        try await admin.alterGroupOffsets("billing", [TopicPartition("orders", 0): 17, TopicPartition("orders", 1): 0])
        // The flow's own sync loop (every 300 ms here) may commit them before this round does:
        // what counts is what the target group holds after it.
        let synced = try await m.mirror.syncGroupsOnce()
        #expect(synced["billing"].map { $0[TopicPartition("us-east.orders", 0)] == 17 } ?? true, "\(synced)")
        let there = try await KafkaAdmin(cluster: cluster(eu)).groupOffsets("billing")
        #expect(there[TopicPartition("us-east.orders", 0)] == 17 && there[TopicPartition("us-east.orders", 1)] == 0)
        // Only forwards: an older source commit does not move the target group back.
        try await admin.alterGroupOffsets("billing", [TopicPartition("orders", 0): 5])
        try await m.mirror.syncGroupsOnce()
        #expect(try await KafkaAdmin(cluster: cluster(eu)).groupOffsets("billing")[TopicPartition("us-east.orders", 0)] == 17)

        // The same translation as MirrorMaker 2 checkpoints, where RemoteClusterUtils looks.
        let checkpoints = try await readPartition(eu, TopicPartition("us-east.checkpoints.internal", 0))
        let decoded = checkpoints.compactMap { r in r.key.flatMap { k in r.value.flatMap { MM2Records.decodeCheckpoint(key: k, value: $0) } } }
        let latest = decoded.last { $0.group == "billing" && $0.target == TopicPartition("us-east.orders", 0) }
        #expect(latest?.upstream == 5 && latest?.downstream == 5, "checkpoints record every translation, \(decoded)")
        #expect(decoded.contains { $0.group == "billing" && $0.target == TopicPartition("us-east.orders", 0) && $0.upstream == 17 && $0.downstream == 17 })

        // Heartbeats cross the link every second even with nothing else to copy.
        let beat = await eventually(20) {
            let beats = (try? await readPartition(eu, TopicPartition("us-east.heartbeats", 0))) ?? []
            guard let last = beats.last, let k = last.key, let v = last.value, let h = MM2Records.decodeHeartbeat(key: k, value: v) else { return false }
            return h.source == "us-east" && h.target == "eu-west" && abs(h.timestamp - Int64(Date().timeIntervalSince1970 * 1000)) < 30_000
        }
        #expect(beat, "the source's heartbeats arrive as us-east.heartbeats")
        await m.stop()
        for x in b { await x.stop() }
    }

    @Test func newTopicsAndPartitionsAppearAndConfigChangesFollow() async throws {
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        let admin = KafkaAdmin(cluster: cluster(us))
        try await admin.createTopic("orders", partitions: 1)
        let m = try RunningMirror(usToEu, from: us, to: eu)
        try await admin.createTopic("orders.late", partitions: 2, configs: ["cleanup.policy": "compact"])
        try await produce(us, "orders.late", count: 200)
        #expect(await caughtUp(us, eu, "orders.late", "us-east.orders.late"), "a topic created after the mirror started is copied")
        try await admin.createPartitions("orders.late", count: 4)
        try await produce(us, "orders.late", count: 400, from: 200)
        #expect(await caughtUp(us, eu, "orders.late", "us-east.orders.late"))
        #expect(await endOffsets(eu, "us-east.orders.late").count == 4, "added partitions are added in the target")
        try await admin.alterTopicConfigs("orders.late", ["retention.ms": "123456789"])
        let followed = await eventually(20) {
            let c = try? await KafkaAdmin(cluster: cluster(eu)).describeTopicConfigs("us-east.orders.late")
            return c?.first { $0.name == "retention.ms" }?.value == "123456789" && c?.first { $0.name == "cleanup.policy" }?.value == "compact"
        }
        #expect(followed, "config changes in the source follow to the remote topic")
        await m.stop()
        for x in b { await x.stop() }
    }

    @Test func aRestartedMirrorNeitherDuplicatesNorSkips() async throws {
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        let admin = KafkaAdmin(cluster: cluster(us))
        try await admin.createTopic("orders", partitions: 2)
        var settings = quickSettings()
        settings.partitionFetchBytes = 64 << 10
        try await produce(us, "orders", count: 2_000)
        // Stopped and started again five times while the source keeps receiving records.
        let producing = Task { try await produce(us, "orders", count: 6_000, from: 2_000) }
        for round in 0..<5 {
            let m = try RunningMirror(usToEu, from: us, to: eu, settings: settings)
            // Stopped as soon as it has copied something more (or everything there is).
            let before = await endOffsets(eu, "us-east.orders").values.reduce(0, +)
            let moved = await eventually(20) {
                let copied = await endOffsets(eu, "us-east.orders").values.reduce(0, +)
                let there = await endOffsets(us, "orders").values.reduce(0, +)
                return copied > before || copied == there
            }
            #expect(moved, "round \(round) copies")
            await m.stop()
        }
        try await producing.value
        let m = try RunningMirror(usToEu, from: us, to: eu, settings: settings)
        #expect(await caughtUp(us, eu, "orders", "us-east.orders"))
        for p: Int32 in 0..<2 {
            let src = try await readPartition(us, TopicPartition("orders", p))
            let dst = try await readPartition(eu, TopicPartition("us-east.orders", p))
            #expect(difference(src, dst) == nil, "partition \(p): every record once, in order")
        }
        // The mapping survived the restarts: translation is exact everywhere.
        let map = try #require(m.mirror.offsetMap(TopicPartition("orders", 0)))
        #expect(map.translate(1_234) == 1_234)
        await m.stop()
        for x in b { await x.stop() }
    }

    @Test func aPartitionWithRecordsWaitingIsNotHeldBehindALongPollOfIdleOnes() async throws {
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        let admin = KafkaAdmin(cluster: cluster(us))
        try await admin.createTopic("orders", partitions: 1)
        try await admin.createTopic("orders.quiet", partitions: 1)
        // Forty batches; the writer's queue holds one chunk of about one batch, so the busy
        // partition keeps waiting for room while the quiet one has nothing to fetch.
        var config = ProducerConfig()
        config.lingerMs = 0
        let c = cluster(us)
        let p = KafkaProducer(cluster: c, config: config)
        for batch in 0..<40 {
            for i in 0..<5 {
                try await p.enqueue(topic: "orders", key: nil, value: ByteBuffer(string: "b\(batch)-\(i)"), partition: 0)
            }
            try await p.flush()
        }
        await p.close()
        await c.close()
        var settings = quickSettings()
        settings.fetchMaxWaitMs = 5_000
        settings.partitionFetchBytes = 1
        settings.partitionBufferBytes = 1
        // And the flow's budget is smaller than any response: each fetch waits for the last
        // one's batches to be written.
        settings.bufferBytes = 1
        settings.heartbeatInterval = .zero
        let m = try RunningMirror(usToEu, from: us, to: eu, settings: settings)
        // Were each of those chunks fetched only after a 5 s long poll of the quiet partition
        // (which nothing ends early), the copy would take minutes.
        #expect(await caughtUp(us, eu, "orders", "us-east.orders", seconds: 40))
        await m.stop()
        for x in b { await x.stop() }
    }

    @Test func eachFetchSessionOfASourceBrokerHasItsOwnFetchInFlight() async throws {
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        let admin = KafkaAdmin(cluster: cluster(us))
        try await admin.createTopic("orders", partitions: 4)
        try await produce(us, "orders", count: 400)
        var settings = quickSettings()
        settings.fetchSessionsPerBroker = 2
        // Once caught up, each session's fetch waits this long for records: both wait at once.
        settings.fetchMaxWaitMs = 5_000
        settings.heartbeatInterval = .zero
        let m = try RunningMirror(usToEu, from: us, to: eu, settings: settings)
        #expect(await caughtUp(us, eu, "orders", "us-east.orders"))
        // One broker, four partitions, two sessions: two fetches in flight, not one.
        #expect(await eventually(10) { m.mirror.fetchesInFlight == 2 })
        // And records that come while both wait are copied.
        try await produce(us, "orders", count: 40, from: 400)
        #expect(await caughtUp(us, eu, "orders", "us-east.orders"))
        await m.stop()
        for x in b { await x.stop() }
    }

    @Test func aSourceThatLostCopiedRecordsStopsThePartitionInsteadOfCopyingAnotherHistory() async throws {
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        try await KafkaAdmin(cluster: cluster(us)).createTopic("orders", partitions: 1)
        try await produce(us, "orders", count: 100)
        let first = try RunningMirror(usToEu, from: us, to: eu)
        #expect(await caughtUp(us, eu, "orders", "us-east.orders"))
        await first.stop()
        // The source loses what was copied: the topic is recreated and gets 50 other records,
        // then a restart (a new leader epoch from offset 50) and 100 more. Its log is now longer
        // than what was copied, so only the epochs tell the histories apart.
        let admin = KafkaAdmin(cluster: cluster(us))
        try await admin.deleteTopic("orders")
        let recreated = await eventually(20) { (try? await admin.createTopic("orders", partitions: 1)) != nil }
        try #require(recreated)
        try await produce(us, "orders", count: 50, tag: "other")
        let dir = us.dir
        await us.server.stop()
        let again = try await InProcessBroker(directory: dir, group: mirrorTestLoops)
        try await produce(again, "orders", count: 100, from: 50, tag: "other")
        let m = try RunningMirror(usToEu, from: again, to: eu)
        let tp = TopicPartition("orders", 0)
        let stopped = await eventually(30) { m.mirror.status.first { $0.source == tp }?.stopped != nil }
        #expect(stopped, "the partition stops")
        #expect(m.mirror.status.first { $0.source == tp }?.stopped?.contains("leader epoch 0 now ends at offset 50") == true)
        #expect(await endOffsets(eu, "us-east.orders")[0] == 100, "nothing of the other history is copied")
        await m.stop()
        await again.stop()
        await eu.stop()
    }

    @Test func identityNamingActiveActiveDoesNotLoop() async throws {
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        for x in b { try await KafkaAdmin(cluster: cluster(x)).createTopic("orders", partitions: 1) }
        let there = Topology.Flow(name: "us-eu", source: "us-east", target: "eu-west", naming: .identity)
        let back = Topology.Flow(name: "eu-us", source: "eu-west", target: "us-east", naming: .identity)
        let m1 = try RunningMirror(there, from: us, to: eu)
        let m2 = try RunningMirror(back, from: eu, to: us)
        try await produce(us, "orders", count: 300, tag: "us")
        try await produce(eu, "orders", count: 200, tag: "eu")
        let converged = await eventually(60) {
            let a = await endOffsets(us, "orders")[0], b = await endOffsets(eu, "orders")[0]
            return a == 500 && b == 500
        }
        #expect(converged, "each region holds its own and the other's records")
        // One more record on each side, written after the copies: once both have crossed, each
        // mirror has read past every copy the other wrote, so a loop would have shown by then.
        try await produce(us, "orders", count: 1, from: 300, tag: "us")
        try await produce(eu, "orders", count: 1, from: 200, tag: "eu")
        let crossed = await eventually(60) {
            let a = await endOffsets(us, "orders")[0] ?? 0, b = await endOffsets(eu, "orders")[0] ?? 0
            return a >= 502 && b >= 502
        }
        #expect(crossed)
        let usEnd = await endOffsets(us, "orders")[0], euEnd = await endOffsets(eu, "orders")[0]
        #expect(usEnd == 502 && euEnd == 502, "nothing is copied back")
        let inEU = try await readPartition(eu, TopicPartition("orders", 0))
        #expect(Set(inEU.compactMap { $0.value.map { String(buffer: $0) } }).count == 502, "no record twice")
        await m1.stop()
        await m2.stop()
        for x in b { await x.stop() }
    }

    @Test func prefixNamingActiveActiveDoesNotLoop() async throws {
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        for x in b { try await KafkaAdmin(cluster: cluster(x)).createTopic("orders", partitions: 2) }
        // Every topic selected on both sides, so only the naming keeps copies from going round.
        let all = Topology.Flow.Selection(include: [".*"], exclude: [])
        let there = Topology.Flow(name: "us-eu", source: "us-east", target: "eu-west", topics: all)
        let back = Topology.Flow(name: "eu-us", source: "eu-west", target: "us-east", topics: all)
        let m1 = try RunningMirror(there, from: us, to: eu)
        let m2 = try RunningMirror(back, from: eu, to: us)
        try await produce(us, "orders", count: 300, tag: "us")
        try await produce(eu, "orders", count: 200, tag: "eu")
        #expect(await caughtUp(us, eu, "orders", "us-east.orders"))
        #expect(await caughtUp(eu, us, "orders", "eu-west.orders"))
        // A topic created after the copies exist: once it arrives, discovery has seen the copies
        // on both sides at least once since they were created.
        for x in b { try await KafkaAdmin(cluster: cluster(x)).createTopic("orders.late", partitions: 1) }
        try await produce(us, "orders.late", count: 1)
        try await produce(eu, "orders.late", count: 1)
        #expect(await caughtUp(us, eu, "orders.late", "us-east.orders.late"))
        #expect(await caughtUp(eu, us, "orders.late", "eu-west.orders.late"))
        for (x, region) in [(us, "us-east"), (eu, "eu-west")] {
            let names = try await KafkaAdmin(cluster: cluster(x)).listTopics(includeInternal: true).map(\.name.rawValue)
            #expect(!names.contains { $0.hasPrefix("\(region).") }, "nothing came back to \(region): \(names.sorted())")
            #expect(!names.contains { $0.hasPrefix("us-east.eu-west.") || $0.hasPrefix("eu-west.us-east.") }, "\(names.sorted())")
        }
        #expect(await endOffsets(eu, "us-east.orders").values.reduce(0, +) == 300)
        #expect(await endOffsets(us, "eu-west.orders").values.reduce(0, +) == 200)
        await m1.stop()
        await m2.stop()
        for x in b { await x.stop() }
    }
}

/// A compacted source: batches with offset gaps are re-batched and the mapping stays exact.
@Suite("Mirror flows: compacted sources", .timeLimit(.minutes(3)))
struct CompactedSourceMirrorTests {
    @Test func aCompactedTopicIsCopiedRecordForRecordAndGapsTranslateToTheNextRecord() async throws {
        let b = try await regions(2) { _, c in
            c.logCleanerBackoffMs = 100
            c.retentionCheckIntervalMs = 100
        }
        let (us, eu) = (b[0], b[1])
        let admin = KafkaAdmin(cluster: cluster(us))
        try await admin.createTopic("orders.latest", partitions: 1, configs: ["cleanup.policy": "compact", "segment.bytes": "2048"])
        // Batches of ten keys; a later round overwrites only the even keys, so compaction leaves
        // batches with holes in them; filler pushes everything into closed segments.
        var config = ProducerConfig()
        config.lingerMs = 0
        let c = cluster(us)
        let p = KafkaProducer(cluster: c, config: config)
        func batch(_ keys: [Int], _ tag: String) async throws {
            for key in keys {
                try await p.enqueue(topic: "orders.latest", key: ByteBuffer(string: "k\(key)"), value: ByteBuffer(string: "\(tag)-k\(key)"), partition: 0)
            }
            try await p.flush()
        }
        try await batch(Array(0..<10), "first")
        try await batch(Array(10..<20), "first")
        try await batch(Array(stride(from: 0, to: 20, by: 2)), "second")
        for f in 0..<10 { try await batch(Array((100 + f * 10)..<(110 + f * 10)), "filler") }
        await p.close()
        await c.close()
        let tp = TopicPartition("orders.latest", 0)
        let compacted = await eventually(60) { ((try? await readPartition(us, tp).count) ?? 130) < 130 }
        try #require(compacted, "the source's cleaner compacted the closed segments")
        let src = try await readPartition(us, tp)

        let m = try RunningMirror(Topology.Flow(name: "us-to-eu", source: "us-east", target: "eu-west"), from: us, to: eu)
        let copied = await eventually(60) {
            let status = m.mirror.status.first { $0.source == tp }
            return status?.copiedUpTo == src.last.map { $0.offset + 1 }
        }
        #expect(copied)
        let dst = try await readPartition(eu, TopicPartition("us-east.orders.latest", 0))
        #expect(difference(src, dst) == nil, "same records, same order")
        #expect(dst.map(\.offset) == Array(0..<Int64(dst.count)), "contiguous in the target")
        let map = try #require(m.mirror.offsetMap(tp))
        for (s, d) in zip(src, dst) { #expect(map.translate(s.offset) == d.offset) }
        // An offset compaction removed translates to the record that followed it.
        var previous: Int64 = -1
        for (s, d) in zip(src, dst) {
            if s.offset > previous + 1 { #expect(map.translate(previous + 1) == d.offset, "gap \(previous + 1)..<\(s.offset)") }
            previous = s.offset
        }
        #expect(map.runs.count > 1, "gaps give several runs")
        await m.stop()
        for x in b { await x.stop() }
    }
}

/// Identity naming maps a batch after it lands; a crash in between must not make the next run copy
/// those records again.
@Suite("Mirror flows: identity naming after a crash", .timeLimit(.minutes(3)))
struct IdentityRecoveryTests {
    @Test func recordsWrittenButNotMappedBeforeACrashAreFoundNotCopiedAgain() async throws {
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        for x in b { try await KafkaAdmin(cluster: cluster(x)).createTopic("orders", partitions: 1) }
        try await produce(eu, "orders", count: 10, tag: "eu-local")
        try await produce(us, "orders", count: 100, tag: "us")
        let flow = Topology.Flow(name: "us-eu", source: "us-east", target: "eu-west", naming: .identity)
        var m = try RunningMirror(flow, from: us, to: eu)
        #expect(await eventually(30) { await endOffsets(eu, "orders")[0] == 110 })
        await m.stop()

        // What a mirror that crashed between producing and mapping leaves behind: the next 50
        // source records already in the target (with their provenance), mixed with local writes.
        try await produce(us, "orders", count: 50, from: 100, tag: "us")
        let next = try await readPartition(us, TopicPartition("orders", 0)).filter { $0.offset >= 100 }
        let c = cluster(eu)
        let p = KafkaProducer(cluster: c, config: ProducerConfig())
        for (i, r) in next.enumerated() {
            _ = try await p.send(topic: "orders", key: r.key, value: r.value,
                                 headers: r.headers + [RecordHeader(key: BatchConverter.provenanceHeader, value: ByteBuffer(string: "us-east"))],
                                 partition: 0)
            if i % 10 == 0 { _ = try await p.send(topic: "orders", value: ByteBuffer(string: "eu-local-late-\(i)"), partition: 0) }
        }
        await p.close()
        await c.close()
        try await produce(us, "orders", count: 20, from: 150, tag: "us")

        m = try RunningMirror(flow, from: us, to: eu)
        #expect(await eventually(30) { await endOffsets(eu, "orders")[0] == 10 + 170 + 5 })
        // One more source record: once it is in, the mirror has copied everything before it, so a
        // record copied twice would be there too.
        try await produce(us, "orders", count: 1, from: 170, tag: "us")
        #expect(await eventually(30) { await endOffsets(eu, "orders")[0] ?? 0 >= 10 + 171 + 5 })
        let inEU = try await readPartition(eu, TopicPartition("orders", 0))
        let copied = inEU.compactMap { $0.value.map { String(buffer: $0) } }.filter { $0.hasPrefix("us-") }
        #expect(copied.count == 171 && Set(copied).count == 171, "each source record once (\(copied.count) copies of \(Set(copied).count))")
        #expect(inEU.count == 186)
        // And the mapping knows where the recovered ones are.
        let map = try #require(m.mirror.offsetMap(TopicPartition("orders", 0)))
        let at = try #require(map.translate(120))
        #expect(inEU.first { $0.offset == at }.map { String(buffer: $0.value!) } == "us-120")
        await m.stop()
        for x in b { await x.stop() }
    }
}
