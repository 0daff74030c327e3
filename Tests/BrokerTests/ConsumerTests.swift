import Broker
import Foundation
import KafkaClient
import KafkaProtocol
import KafkaWire
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// The Swift consumer against an in-process broker.
@Suite("Swift consumer", .timeLimit(.minutes(2)))
struct ConsumerTests {
    func produce(_ b: InProcessBroker, topic: TopicName, partitions: Int32, count: Int) async throws {
        let conn = try await b.connect()
        var create = CreateTopicsRequest()
        create.topics = [.init(name: topic, numPartitions: partitions, replicationFactor: 1)]
        _ = try await conn.send(create)
        for i in 0..<count {
            _ = try await conn.send(produceRequest(topic, Int32(i) % partitions, try batch(["m\(i)"])))
        }
        await conn.close()
    }

    func cluster(_ b: InProcessBroker) -> KafkaCluster {
        KafkaCluster(bootstrap: [BootstrapAddress(host: "127.0.0.1", port: b.port)], group: MultiThreadedEventLoopGroup.singleton)
    }

    @Test func groupMembersSplitPartitionsAndCommit() async throws {
        let b = try await InProcessBroker()
        try await produce(b, topic: "cq", partitions: 4, count: 200)
        var config = ConsumerConfig(groupID: "swift-group")
        config.autoOffsetReset = .earliest
        config.heartbeatIntervalMs = 100
        config.sessionTimeoutMs = 6000
        config.rebalanceTimeoutMs = 20_000
        let c1 = KafkaConsumer(cluster: cluster(b), config: config)
        let c2 = KafkaConsumer(cluster: cluster(b), config: config)
        try c1.subscribe(["cq"])
        try c2.subscribe(["cq"])
        // Each member polls in its own task, as two application instances would, until every record
        // is read and the group has settled on two partitions each. A member that stopped polling
        // early (it may read everything before the other one joins) would hold the other's rebalance
        // until the rebalance timeout, as in Kafka.
        let log = EventLog()
        let deadline = ContinuousClock.now + .seconds(60)
        @Sendable func settled() async -> Bool {
            let (a1, a2) = (c1.assignment, c2.assignment)
            return Set(log.all).count == 200 && a1.count == 2 && a2.count == 2
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in [c1, c2] {
                group.addTask {
                    while ContinuousClock.now < deadline, !(await settled()) {
                        for r in try await c.poll(timeout: .milliseconds(200)) { log.add(String(buffer: r.value!)) }
                    }
                }
            }
            try await group.waitForAll()
        }
        var seen: [String: Int] = [:]
        for v in log.all { seen[v, default: 0] += 1 }
        #expect(seen.count == 200)
        #expect(seen.values.allSatisfy { $0 == 1 }, "each record once")
        let a1 = c1.assignment, a2 = c2.assignment
        #expect(a1.count == 2 && a2.count == 2 && Set(a1).isDisjoint(with: a2), "range split: \(a1) / \(a2)")
        try await c1.commit()
        try await c2.commit()
        await c1.close()
        await c2.close()
        let admin = KafkaAdmin(cluster: cluster(b))
        let committed = try await admin.groupOffsets("swift-group")
        #expect(committed.values.reduce(0, +) == 200)
        await b.stop()
    }

    @Test func assignAndSeekByOffsetAndTime() async throws {
        let b = try await InProcessBroker()
        try await produce(b, topic: "seek", partitions: 1, count: 50)
        let c = KafkaConsumer(cluster: cluster(b), config: ConsumerConfig())
        c.assign([TopicPartition("seek", 0)])
        c.seek(TopicPartition("seek", 0), to: .offset(45))
        var got: [ConsumerRecord] = []
        while got.count < 5 { got += try await c.poll(timeout: .milliseconds(500)) }
        #expect(got.map(\.offset) == [45, 46, 47, 48, 49])
        c.seek(TopicPartition("seek", 0), to: .earliest)
        // The seek needs a ListOffsets before the fetch: poll until records come (a loaded machine
        // can take longer than one poll's timeout).
        var first: [ConsumerRecord] = []
        let deadline = ContinuousClock.now + .seconds(30)
        while first.isEmpty && ContinuousClock.now < deadline { first = try await c.poll(timeout: .milliseconds(500)) }
        #expect(first.first?.offset == 0)
        await c.close()
        await b.stop()
    }
}

extension ConsumerTests {
    @Test func cooperativeStickyKeepsOwnedPartitionsThroughARebalance() async throws {
        let b = try await InProcessBroker()
        try await produce(b, topic: "coop", partitions: 4, count: 40)
        var config = ConsumerConfig(groupID: "coop-group")
        config.assignors = [CooperativeStickyAssignor()]
        config.autoOffsetReset = .earliest
        config.heartbeatIntervalMs = 100
        let events = EventLog()
        let c1 = KafkaConsumer(cluster: cluster(b), config: config)
        c1.onRebalance { revoked, added in events.add("c1 -\(revoked.map(\.partition).sorted()) +\(added.map(\.partition).sorted())") }
        try c1.subscribe(["coop"])
        let deadline = ContinuousClock.now + .seconds(10)
        while c1.assignment.count < 4 && ContinuousClock.now < deadline { _ = try await c1.poll(timeout: .milliseconds(100)) }
        #expect(c1.assignment.count == 4)
        let c2 = KafkaConsumer(cluster: cluster(b), config: config)
        try c2.subscribe(["coop"])
        let until = ContinuousClock.now + .seconds(15)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in [c1, c2] {
                group.addTask {
                    while ContinuousClock.now < until {
                        _ = try await c.poll(timeout: .milliseconds(100))
                        let n1 = c1.assignment.count, n2 = c2.assignment.count
                        if n1 == 2 && n2 == 2 { return }
                    }
                }
            }
            try await group.waitForAll()
        }
        let a1 = c1.assignment, a2 = c2.assignment
        #expect(a1.count == 2 && a2.count == 2 && Set(a1).isDisjoint(with: a2), "\(a1) / \(a2)")
        // c1 only ever gave up the two partitions that moved: it never revoked everything.
        #expect(!events.all.contains { $0.hasPrefix("c1 -[0, 1, 2, 3]") }, "\(events.all)")
        await c1.close()
        await c2.close()
        await b.stop()
    }
}

final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}
