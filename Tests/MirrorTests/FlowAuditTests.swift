import Foundation
import KafkaClient
import KafkaProtocol
import Logging
import Mirror
import NIOCore
import Testing
import TestSupport
import Topology

@Suite("meridian audit", .timeLimit(.minutes(2)))
struct FlowAuditTests {
    func audit(_ flow: Topology.Flow, _ us: InProcessBroker, _ eu: InProcessBroker) async throws -> FlowAudit.Result {
        let s = cluster(us), t = cluster(eu)
        let result = try await FlowAudit(flow: flow, regions: ["us-east", "eu-west"], source: s, target: t, logger: Logger(label: "audit-test")).run()
        await s.close()
        await t.close()
        return result
    }

    func kinds(_ r: FlowAudit.Result) -> [String] {
        r.partitions.flatMap(\.findings).map { "\($0.kind.rawValue) \($0.partition) \($0.sourceOffset ?? -1) \($0.targetOffset ?? -1)" }
    }

    @Test func findsARecordDeletedFromTheTargetAHandMadeDuplicateAndAStrangerAndIsExactOnACleanCopy() async throws {
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        let flow = Topology.Flow(name: "us-to-eu", source: "us-east", target: "eu-west", topics: .init(include: ["orders"], exclude: []))
        try await KafkaAdmin(cluster: cluster(us)).createTopic("orders", partitions: 2)
        try await produce(us, "orders", count: 300)
        let m = try RunningMirror(flow, from: us, to: eu)
        let ends = await endOffsets(us, "orders")
        #expect(await eventually(30) { await endOffsets(eu, "us-east.orders") == ends })
        await m.stop()

        let clean = try await audit(flow, us, eu)
        #expect(clean.exact && clean.checked == 300, "\(kinds(clean))")
        #expect(clean.partitions.allSatisfy { $0.notYetCopied == 0 })

        // Someone deletes the first 10 records of the copy of partition 0.
        let admin = KafkaAdmin(cluster: cluster(eu))
        #expect(try await admin.deleteRecords(before: [TopicPartition("us-east.orders", 0): 10])[TopicPartition("us-east.orders", 0)] == 10)
        // …and produces by hand into the copy of partition 1 a second copy of source record 5 and a record from nowhere.
        let original = try await readPartition(us, TopicPartition("orders", 1))[5]
        let p = KafkaProducer(cluster: cluster(eu), config: ProducerConfig())
        let dup = try await p.send(topic: "us-east.orders", key: original.key, value: original.value, headers: original.headers, partition: 1,
                                   timestamp: original.timestamp)
        let stranger = try await p.send(topic: "us-east.orders", key: ByteBuffer(string: "who"), value: ByteBuffer(string: "me?"), partition: 1)
        await p.close()
        // …and the source gets 5 more records the mirror (stopped) has not copied: lag, not a finding.
        try await produce(us, "orders", count: 5, from: 300)

        let broken = try await audit(flow, us, eu)
        #expect(!broken.exact)
        let found = kinds(broken)
        #expect(found.filter { $0.hasPrefix("missing 0 ") } == (0..<10).map { "missing 0 \($0) \($0)" }, "\(found)")
        #expect(found.contains("duplicated 1 5 \(dup.offset)"), "\(found)")
        #expect(found.contains("unexpected 1 -1 \(stranger.offset)"), "\(found)")
        #expect(found.count == 12, "nothing else is flagged: \(found)")
        #expect(broken.partitions.map(\.notYetCopied).reduce(0, +) == 5)
    }

    @Test func namesTheFieldsOfAnAlteredRecordAndFindsAReorderedOne() async throws {
        // A target made by hand: the "copy" of a 4-record partition with records 1 and 2 swapped
        // and record 3 given another value. The mapping says 0…3 → 0…3.
        let b = try await regions(2)
        let (us, eu) = (b[0], b[1])
        let flow = Topology.Flow(name: "us-to-eu", source: "us-east", target: "eu-west", topics: .init(include: ["orders"], exclude: []))
        try await KafkaAdmin(cluster: cluster(us)).createTopic("orders", partitions: 1)
        try await KafkaAdmin(cluster: cluster(eu)).createTopic("us-east.orders", partitions: 1)
        let src = KafkaProducer(cluster: cluster(us), config: ProducerConfig())
        let dst = KafkaProducer(cluster: cluster(eu), config: ProducerConfig())
        let ts: Int64 = 1_796_000_000_000
        for i in 0..<4 { _ = try await src.send(topic: "orders", key: ByteBuffer(string: "k\(i)"), value: ByteBuffer(string: "v\(i)"), partition: 0, timestamp: ts + Int64(i)) }
        for (i, v) in [(0, "v0"), (2, "v2"), (1, "v1"), (3, "changed")] {
            _ = try await dst.send(topic: "us-east.orders", key: ByteBuffer(string: "k\(i)"), value: ByteBuffer(string: v), partition: 0, timestamp: ts + Int64(i))
        }
        await src.close()
        await dst.close()
        let store = OffsetMapStore(target: cluster(eu), logger: Logger(label: "audit-test"))
        try await store.ensureTopic()
        try await store.write(.init(flow: "us-to-eu", topic: "orders", partition: 0), targetTopic: "us-east.orders",
                              runs: [OffsetRun(src: 0, tgt: 0, count: 4, epoch: 0)])
        await store.close()
        let r = try await audit(flow, us, eu)
        let found = r.partitions.flatMap(\.findings)
        #expect(found.map { "\($0.kind.rawValue) \($0.sourceOffset ?? -1) \($0.targetOffset ?? -1)" } == ["reordered 1 2", "reordered 2 1", "altered 3 3"],
                "\(found)")
        #expect(found.last?.detail == "differs in value")
    }
}
