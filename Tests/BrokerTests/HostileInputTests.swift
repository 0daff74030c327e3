@testable import Broker
import Foundation
import KafkaProtocol
import KafkaWire
import LogStorage
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// Requests a client controls completely, well framed but hostile inside: each is answered with
/// Kafka's error code and the broker goes on serving.
@Suite("Hostile requests", .timeLimit(.minutes(2)))
struct HostileInputTests {
    /// A one-record batch with `mutate` applied to its bytes and the CRC fixed up afterwards, so
    /// only the field-level checks can catch it.
    static func crafted(_ values: [String] = ["x"], producerID: Int64 = -1, sequence: Int32 = -1, timestamp: Int64 = 1_000,
                        _ mutate: (inout ByteBuffer, Int) -> Void = { _, _ in }) throws -> ByteBuffer {
        var b = try batch(values, producerID: producerID, epoch: producerID >= 0 ? 0 : -1, sequence: sequence, timestamp: timestamp)
        let at = b.readerIndex
        mutate(&b, at)
        let crc = CRC32C.checksum(b, at: at + RecordBatchHeader.attributesOffset, length: b.readableBytes - RecordBatchHeader.attributesOffset)
        b.setInteger(crc, at: at + RecordBatchHeader.crcOffset, endianness: .big)
        return b
    }

    func produce(_ conn: KafkaConnection, _ topic: TopicName, _ records: ByteBuffer, acks: Int16 = -1) async throws -> ProduceResponse.PartitionProduceResponse {
        let resp = try await conn.send(produceRequest(topic, 0, records, acks: acks), version: 9)
        return resp.responses[0].partitionResponses[0]
    }

    @Test func idempotentBatchWithABaseOffsetNearInt64MaxIsAppendedAtTheLogEnd() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "edge")]))
        let hostile = try Self.crafted(["a", "b"], producerID: 4242, sequence: 0) { buf, at in
            // baseOffset is outside the CRC: any value arrives intact.
            buf.setInteger(Int64.max - 1, at: at, endianness: .big)
        }
        let r = try await produce(conn, "edge", hostile)
        #expect(r.errorCode == .none)
        #expect(r.baseOffset == 0, "the producer's base offset is ignored")
        // The same retry again is recognised as a duplicate of the batch at 0.
        let dup = try await produce(conn, "edge", hostile)
        #expect(dup.errorCode == .none && dup.baseOffset == 0)
        let next = try await produce(conn, "edge", try Self.crafted(["c"], producerID: 4242, sequence: 2) { buf, at in
            buf.setInteger(Int64.min, at: at, endianness: .big)
        })
        #expect(next.errorCode == .none && next.baseOffset == 2)
        await conn.close()
        await b.stop()
    }

    @Test func malformedRecordsInsideAValidBatchAreInvalidRecord() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "rec")]))
        let first = RecordBatchHeader.size
        let cases: [(String, (inout ByteBuffer, Int) -> Void)] = [
            // The record's length varint claims more bytes than the batch holds.
            ("record length", { buf, at in buf.setInteger(UInt8(0x7E), at: at + first) }),
            // More records declared than present (lastOffsetDelta kept consistent).
            ("record count", { buf, at in
                buf.setInteger(Int32(3), at: at + 57, endianness: .big)
                buf.setInteger(Int32(2), at: at + 23, endianness: .big)
            }),
            // A header with a null key (-1): Kafka refuses it too. (Offset deltas, negative lengths
            // and the max timestamp are repaired instead: ProduceRepairTests.)
            ("null header key", { buf, at in
                buf.setInteger(UInt8(0x02), at: buf.writerIndex - 1)    // header count 1 …
                buf.writeInteger(UInt8(0x01))                            // … with key length -1
                buf.writeInteger(UInt8(0x01))                            // and a null value
                buf.setInteger(UInt8(0x1A), at: at + first)              // record length 11 → 13
                buf.setInteger(Int32(buf.readableBytes - 12), at: at + 8, endianness: .big)
            }),
        ]
        for (what, mutate) in cases {
            let r = try await produce(conn, "rec", try Self.crafted(["hello"], mutate))
            #expect(r.errorCode == .invalidRecord, "\(what): \(r.errorMessage ?? "")")
        }
        #expect(try await produce(conn, "rec", try batch(["fine"])).errorCode == .none, "the broker goes on")
        await conn.close()
        await b.stop()
    }

    @Test func timestampsOutsideTheAcceptedWindowAreInvalidTimestamp() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "ts")]))
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        // Kafka 4's message.timestamp.after.max.ms default: one hour ahead at most.
        let future = try await produce(conn, "ts", try batch(["late"], timestamp: now + 2 * 3_600_000))
        #expect(future.errorCode == .invalidTimestamp)
        let extreme = try await produce(conn, "ts", try batch(["old"], timestamp: Int64.min + 5))
        #expect(extreme.errorCode == .invalidTimestamp)
        #expect(try await produce(conn, "ts", try batch(["now"], timestamp: now)).errorCode == .none)
        #expect(try await produce(conn, "ts", try batch(["1970"], timestamp: 5)).errorCode == .none, "before.max.ms is unbounded by default")
        // A topic with a tighter window.
        var create = CreateTopicsRequest()
        create.topics = [.init(name: "ts-tight", numPartitions: 1, replicationFactor: 1,
                               configs: [.init(name: "message.timestamp.before.max.ms", value: "60000")])]
        _ = try await conn.send(create)
        #expect(try await produce(conn, "ts-tight", try batch(["old"], timestamp: now - 120_000)).errorCode == .invalidTimestamp)
        await conn.close()
        await b.stop()
    }

    @Test func aPartitionNamedTwiceIsWrittenAndAnsweredOnce() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "twice")]))
        var req = ProduceRequest()
        req.acks = -1
        req.timeoutMs = 5000
        req.topicData = [.init(name: "twice", partitionData: [.init(index: 0, records: .bytes(try batch(["first"]))),
                                                            .init(index: 0, records: .bytes(try batch(["second"])))])]
        let resp = try await conn.send(req, version: 9)
        #expect(resp.responses.flatMap(\.partitionResponses).count == 1)
        var list = ListOffsetsRequest()
        list.topics = [.init(name: "twice", partitions: [.init(partitionIndex: 0, timestamp: -1)])]
        #expect(try await conn.send(list).topics[0].partitions[0].offset == 1, "one append")
        // ListOffsets refuses a partition named twice, as Kafka does.
        list.topics = [.init(name: "twice", partitions: [.init(partitionIndex: 0, timestamp: -1), .init(partitionIndex: 0, timestamp: -2)])]
        let dup = try await conn.send(list)
        #expect(dup.topics[0].partitions.allSatisfy { $0.errorCode == .invalidRequest })
        // Fetch serves it once.
        var fetch = FetchRequest()
        fetch.maxWaitMs = 0
        fetch.maxBytes = 1 << 20
        fetch.topics = [.init(topic: "twice", partitions: Array(repeating: .init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20), count: 3))]
        let f = try await conn.send(fetch, version: 11)
        #expect(f.responses.flatMap(\.partitions).count == 1)
        await conn.close()
        await b.stop()
    }

    @Test func fetchResponsesNeverExceedFetchMaxBytes() async throws {
        let b = try await InProcessBroker { $0.fetchMaxBytes = 256 * 1024 }
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "big")]))
        let value = String(repeating: "v", count: 900)
        for _ in 0..<40 { #expect(try await produce(conn, "big", try batch(Array(repeating: value, count: 30))).errorCode == .none) }
        var fetch = FetchRequest()
        fetch.maxWaitMs = 0
        fetch.maxBytes = Int32.max
        fetch.topics = [.init(topic: "big", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: Int32.max)])]
        let f = try await conn.send(fetch, version: 11)
        guard case .bytes(let records)? = f.responses[0].partitions[0].records else { Issue.record("no records"); return }
        #expect(records.readableBytes <= 256 * 1024 && records.readableBytes > 100 * 1024, "\(records.readableBytes) bytes")
        await conn.close()
        await b.stop()
    }

    @Test func groupFieldsLongerThanTheOffsetsTopicCanStoreAreRefused() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        let long = String(repeating: "g", count: 40_000)
        var join = JoinGroupRequest()
        join.groupID = GroupID(long)
        join.sessionTimeoutMs = 10_000
        join.rebalanceTimeoutMs = 10_000
        join.protocolType = "consumer"
        join.protocols = [.init(name: "range", metadata: ByteBuffer())]
        // v6+ carries compact strings, which may be longer than an int16 length allows.
        #expect(try await conn.send(join, version: 7).errorCode == .invalidGroupID)
        join.groupID = "fine"
        join.protocols = [.init(name: long, metadata: ByteBuffer())]
        #expect(try await conn.send(join, version: 7).errorCode == .invalidRequest)
        var commit = OffsetCommitRequest()
        commit.groupID = GroupID(long)
        commit.generationIDOrMemberEpoch = -1
        commit.topics = [.init(name: "t", partitions: [.init(partitionIndex: 0, committedOffset: 1, committedMetadata: "")])]
        #expect(try await conn.send(commit, version: 8).topics[0].partitions[0].errorCode == .invalidGroupID)
        commit.groupID = "fine"
        commit.memberID = long
        commit.generationIDOrMemberEpoch = 3
        #expect(try await conn.send(commit, version: 8).topics[0].partitions[0].errorCode == .unknownMemberID)
        // The coordinator still works.
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "t")]))
        commit.memberID = ""
        commit.generationIDOrMemberEpoch = -1
        #expect(try await conn.send(commit, version: 8).topics[0].partitions[0].errorCode == .none)
        await conn.close()
        await b.stop()
    }

    @Test func requestMemoryIsReturnedWhenConnectionsGoAway() async throws {
        // Its own event loop: what is measured is the broker reacting to closes within seconds, and
        // the shared group stalled for longer than the wait once in CI (see ConnectionLimitTests).
        let loop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let b = try await InProcessBroker(group: loop)
        let pool = b.server.requestMemory
        func waitFor(_ what: String, _ condition: @escaping () -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(10)
            while !condition() && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(condition(), "\(what): \(pool.reserved) bytes reserved")
        }
        // A connection announces 50 MB and sends only the start: the announced size is reserved
        // (not allocated) until the connection goes away.
        let fd = try #require(connectLoopback(port: b.port))
        let header: [UInt8] = withUnsafeBytes(of: Int32(50_000_000).bigEndian, Array.init) + [0, 0, 0, 9, 0, 0, 0, 1]
        _ = header.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
        try await waitFor("reserved while the request arrives") { pool.reserved == 50_000_000 }
        close(fd)
        try await waitFor("released when the connection closes") { pool.reserved == 0 }
        // A long-polling fetch whose connection closes before it is answered releases once.
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "idle")]))
        var fetch = FetchRequest()
        fetch.maxWaitMs = 300
        fetch.minBytes = 1
        fetch.topics = [.init(topic: "idle", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1024)])]
        let pending: EventLoopFuture<FetchResponse> = conn.send(fetch, version: 11)
        await conn.close()
        _ = try? await pending.get()
        try await Task.sleep(for: .milliseconds(400))
        try await waitFor("nothing held, nothing released twice") { pool.reserved == 0 }
        await b.stop()
        try await loop.shutdownGracefully()
    }

    @Test func clientsCannotChangeTheOffsetsTopic() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        let internalTopic = GroupCoordinator.topicName
        let p = try await produce(conn, internalTopic, try batch(["forged"]))
        #expect(p.errorCode == .invalidTopicException)
        var del = DeleteRecordsRequest()
        del.topics = [.init(name: internalTopic, partitions: [.init(partitionIndex: 0, offset: -1)])]
        #expect(try await conn.send(del).topics[0].partitions[0].errorCode == .invalidTopicException)
        var parts = CreatePartitionsRequest()
        parts.topics = [.init(name: internalTopic, count: 100, assignments: nil)]
        #expect(try await conn.send(parts).results[0].errorCode == .topicAuthorizationFailed)
        var alter = AlterConfigsRequest()
        alter.resources = [.init(resourceType: 2, resourceName: internalTopic.rawValue, configs: [.init(name: "cleanup.policy", value: "delete")])]
        #expect(try await conn.send(alter).responses[0].errorCode == .topicAuthorizationFailed)
        var inc = IncrementalAlterConfigsRequest()
        inc.resources = [.init(resourceType: 2, resourceName: internalTopic.rawValue,
                               configs: [.init(name: "retention.ms", configOperation: 0, value: "1")])]
        #expect(try await conn.send(inc).responses[0].errorCode == .topicAuthorizationFailed)
        var delTopics = DeleteTopicsRequest()
        delTopics.topicNames = [internalTopic]
        #expect(try await conn.send(delTopics, version: 4).responses[0].errorCode == .topicAuthorizationFailed)
        #expect(b.server.broker.logs.topic(internalTopic)?.record.partitions == 4)
        #expect(b.server.broker.logs.log(internalTopic, 0)?.offsets.logEndOffset == 0, "nothing was written by a client")
        await conn.close()
        await b.stop()
    }

    @Test func stoppingTheBrokerWithALongPollParkedDoesNotSpinItsEventLoop() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        var create = CreateTopicsRequest()
        create.topics = [.init(name: "quiet", numPartitions: 1, replicationFactor: 1)]
        _ = try await conn.send(create)
        // A fetch of an empty partition that may wait for days (a client chooses max_wait_ms).
        var fetch = FetchRequest()
        fetch.replicaID = -1
        fetch.maxWaitMs = Int32.max
        fetch.minBytes = 1
        fetch.maxBytes = 1 << 20
        fetch.topics = [.init(topic: "quiet", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)])]
        let parked: EventLoopFuture<FetchResponse> = conn.send(fetch, version: 11, timeout: .seconds(120))
        let stats = b.server.broker.stats
        while stats.fetchEvaluations.load(ordering: .relaxed) < 2 { try await Task.sleep(for: .milliseconds(5)) }
        await b.stop()
        #expect((try? await parked.get()) == nil, "the connection closed with the broker")
        // Closed partitions do not change again: the parked fetch must not keep waking up and
        // re-registering (it spun on its event loop until max_wait_ms, here 24 days).
        let atStop = stats.fetchEvaluations.load(ordering: .relaxed)
        try await Task.sleep(for: .milliseconds(300))
        let later = stats.fetchEvaluations.load(ordering: .relaxed)
        #expect(later - atStop < 10, "\(later - atStop) fetch evaluations in 300 ms after the broker stopped")
        await conn.close()
    }
}
