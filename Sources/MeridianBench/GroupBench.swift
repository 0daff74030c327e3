import Foundation
import KafkaClient
import KafkaProtocol
import KafkaWire
import NIOConcurrencyHelpers
import NIOCore

extension BenchRunner {
    /// N consumers in one group read a topic; then one leaves and the time until the others own
    /// every partition again is measured.
    public func groupConsume(consumers n: Int, partitions: Int32, fillBytes: Int64, heartbeatMs: Int64) async throws {
        let topic = TopicName("bench-\(runID)-group-p\(partitions)")
        try await createTopic(topic, partitions: partitions)
        say("  (filling \(topic) with about \(formatBytes(Double(fillBytes))) first)")
        var written: Int64 = 0
        while written < fillBytes {
            let chunk = try ProduceLoad(connection: connection, topic: topic, partitions: partitions, recordSize: 1024, acks: 1,
                                        bytesPerRequest: 1 << 20, inFlight: 8, duration: 1)
            written += try await chunk.run().get().bytes
        }
        let (host, port) = (common.host, common.port)
        var config = ConsumerConfig(groupID: GroupID("bench-\(runID)-group"))
        config.autoOffsetReset = .earliest
        config.heartbeatIntervalMs = heartbeatMs
        config.sessionTimeoutMs = 10_000
        config.maxPartitionFetchBytes = 4 << 20
        config.checkCRCs = false
        let owners = NIOLockedValueBox<[Int: Set<TopicPartition>]>([:])
        let lastChange = NIOLockedValueBox<ContinuousClock.Instant>(.now)
        var members: [KafkaConsumer] = []
        var clusters: [KafkaCluster] = []
        for i in 0..<n {
            let cl = KafkaCluster(bootstrap: [BootstrapAddress(host: host, port: port)], group: group)
            clusters.append(cl)
            let c = KafkaConsumer(cluster: cl, config: config)
            c.onRebalance { revoked, added in
                owners.withLockedValue { o in
                    o[i, default: []].subtract(revoked)
                    o[i, default: []].formUnion(added)
                }
                lastChange.withLockedValue { $0 = .now }
            }
            try c.subscribe([topic])
            members.append(c)
        }
        let total = ManagedCounter()
        let stopAt = ContinuousClock.now + .seconds(common.seconds)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in members {
                group.addTask {
                    while ContinuousClock.now < stopAt {
                        let batch = try await c.poll(timeout: .milliseconds(200))
                        total.add(batch.count)
                    }
                }
            }
            try await group.waitForAll()
        }
        let seconds = Double((ContinuousClock.now - start).components.seconds) + Double((ContinuousClock.now - start).components.attoseconds) / 1e18
        say(String(format: "group of %d consumers, %d partitions: %.0f records/s (%.1f MB/s)", n, partitions,
                   Double(total.value) / seconds, Double(total.value) * 1024 / seconds / 1_000_000))

        // One member leaves; the others keep polling until they own every partition again.
        let leaving = members.removeLast()
        let leftAt = ContinuousClock.now
        await leaving.close()
        let everything = Set((0..<partitions).map { TopicPartition(topic, $0) })
        let deadline = ContinuousClock.now + .seconds(30)
        var done = false
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in members {
                group.addTask {
                    while ContinuousClock.now < deadline {
                        let owned = owners.withLockedValue { o in (0..<(n - 1)).reduce(into: Set<TopicPartition>()) { $0.formUnion(o[$1] ?? []) } }
                        if owned == everything { return }
                        _ = try await c.poll(timeout: .milliseconds(50))
                    }
                }
            }
            try await group.waitForAll()
        }
        let owned = owners.withLockedValue { o in (0..<(n - 1)).reduce(into: Set<TopicPartition>()) { $0.formUnion(o[$1] ?? []) } }
        done = owned == everything
        let took = lastChange.withLockedValue { $0 } - leftAt
        say(done
            ? "rebalance after a member left: \(took.components.seconds * 1000 + took.components.attoseconds / 1_000_000_000_000_000) ms until the other \(n - 1) owned all \(partitions) partitions (heartbeat interval \(heartbeatMs) ms)"
            : "rebalance after a member left did not finish within 30 s")
        for c in members { await c.close() }
        for cl in clusters { await cl.close() }
    }

    /// Standalone offset commits (each one partition of one group) with `inFlight` outstanding.
    public func commits(inFlight: Int, groups: Int) async throws {
        let topic = TopicName("bench-\(runID)-commits")
        try await createTopic(topic, partitions: 1)
        let conn = connection
        let version = try conn.version(for: OffsetCommitRequest.self, max: 8)
        let frames: [ByteBuffer] = try (0..<groups).map { g in
            var req = OffsetCommitRequest()
            req.groupID = GroupID("bench-\(runID)-commit-\(g)")
            req.generationIDOrMemberEpoch = -1
            req.topics = [.init(name: topic, partitions: [.init(partitionIndex: 0, committedOffset: Int64(g), committedMetadata: "")])]
            return try KafkaConnection.encodeFrame(req, version: version, clientID: "meridian-bench")
        }
        let done = ManagedCounter(), failed = ManagedCounter()
        let stopAt = NIODeadline.now() + .nanoseconds(Int64(common.seconds * 1e9))
        let loop = conn.eventLoop
        let start = NIODeadline.now()
        let finished = loop.makePromise(of: Void.self)
        let outstanding = NIOLockedValueBox(0)
        @Sendable func send(_ i: Int) {
            outstanding.withLockedValue { $0 += 1 }
            conn.sendFrame(frames[i % frames.count]).whenComplete { r in
                if case .success(var payload) = r,
                   OffsetCommitResponse.responseHeaderVersion(version) == 0 || (try? payload.readTaggedFields()) != nil,
                   let resp = try? OffsetCommitResponse(from: &payload, version: version),
                   resp.topics.first?.partitions.first?.errorCode == ErrorCode.none {
                    done.add(1)
                } else {
                    failed.add(1)
                }
                let left = outstanding.withLockedValue { $0 -= 1; return $0 }
                if NIODeadline.now() < stopAt {
                    send(i + inFlight)
                } else if left == 0 {
                    finished.succeed()
                }
            }
        }
        loop.execute { for i in 0..<inFlight { send(i) } }
        try await finished.futureResult.get()
        let seconds = Double((NIODeadline.now() - start).nanoseconds) / 1e9
        say(String(format: "offset commits (fsynced, %d in flight, %d groups): %.0f commits/s%@", inFlight, groups,
                   Double(done.value) / seconds, failed.value > 0 ? " (\(failed.value) failed)" as NSString : "" as NSString))
    }
}
