import Broker
import Foundation
import KafkaProtocol
import KafkaWire
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// Protocol corner cases from COMPAT.md, against an in-process broker through a raw client connection.
@Suite("Broker protocol behaviour", .timeLimit(.minutes(2)))
struct ProtocolBehaviourTests {
    @Test func apiVersionsAboveOurMaximumGetsV0ShapedAnswer() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        // Hand-build an ApiVersions v9 request (header v2, empty tagged body).
        var w = KafkaWriter()
        let at = KafkaFrame.begin(&w)
        RequestHeader(apiKey: .apiVersions, apiVersion: 9, correlationID: 0, clientID: "x").encode(to: &w, headerVersion: 2)
        w.writeTaggedFields([], unknown: [])
        KafkaFrame.finish(&w, sizeAt: at)
        var payload = try await conn.sendFrame(w.buffer).get()
        // v0 body: error, count, {key, min, max}... and nothing else (no throttle, no tags).
        let resp = try ApiVersionsResponse(from: &payload, version: 0)
        #expect(payload.readableBytes == 0)
        #expect(resp.errorCode == .unsupportedVersion)
        #expect(resp.apiKeys.contains { $0.apiKey == 18 && $0.maxVersion == 4 })
        // And a normal v3 exchange advertises the COMPAT ranges.
        #expect(conn.brokerVersions[0] == 0...11)
        #expect(conn.brokerVersions[1] == 4...12)
        #expect(conn.brokerVersions[68] == nil && conn.brokerVersions[71] == nil, "no KIP-848 or telemetry APIs")
        await conn.close()
        await b.stop()
    }

    @Test func produceVersionsBelowThreeAreRefusedPerPartition() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        let resp = try await conn.send(produceRequest("old", 0, try batch(["x"])), version: 2)
        #expect(resp.responses[0].partitionResponses[0].errorCode == .unsupportedVersion)
        await conn.close()
        await b.stop()
    }

    @Test func acksZeroGetsNoResponseAndLaterRequestsStillMatch() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "fire")]))
        let frame = try InProcessBroker.rawFrame(produceRequest("fire", 0, try batch(["a", "b"]), acks: 0), version: 9)
        try await conn.sendFrameWithoutResponse(frame).get()
        // The next requests' responses are not confused with a (non-existent) produce response:
        // ListOffsets answers for itself, and the latest offset (the high watermark) reaches 2 once
        // the group-committed flush of the two records is done.
        var list = ListOffsetsRequest()
        list.topics = [.init(name: "fire", partitions: [.init(partitionIndex: 0, timestamp: -1)])]
        var offset: Int64 = -1
        let deadline = ContinuousClock.now + .seconds(10)
        while offset != 2 && ContinuousClock.now < deadline {
            let r = try await conn.send(list)
            #expect(r.topics.first?.name == "fire")
            offset = r.topics[0].partitions[0].offset
            if offset != 2 { try await Task.sleep(for: .milliseconds(2)) }
        }
        #expect(offset == 2)
        await conn.close()
        await b.stop()
    }

    @Test func badBatchesGetPreciseErrorCodes() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "bad")]))
        var corrupt = try batch(["one", "two"])
        corrupt.setInteger(UInt8(0x77), at: corrupt.readerIndex + 70)
        var r = try await conn.send(produceRequest("bad", 0, corrupt))
        #expect(r.responses[0].partitionResponses[0].errorCode == .corruptMessage)

        var miscounted = try batch(["one", "two"])
        miscounted.setInteger(Int32(5), at: miscounted.readerIndex + 57, endianness: .big)
        let crc = CRC32C.checksum(miscounted, at: miscounted.readerIndex + 21, length: miscounted.readableBytes - 21)
        miscounted.setInteger(crc, at: miscounted.readerIndex + 17, endianness: .big)
        r = try await conn.send(produceRequest("bad", 0, miscounted))
        #expect(r.responses[0].partitionResponses[0].errorCode == .invalidRecord)
        #expect(r.responses[0].partitionResponses[0].errorMessage?.contains("count") == true)

        var two = try batch(["a"])
        var second = try batch(["b"])
        two.writeBuffer(&second)
        r = try await conn.send(produceRequest("bad", 0, two))
        #expect(r.responses[0].partitionResponses[0].errorCode == .invalidRecord)

        r = try await conn.send(produceRequest("bad", 0, try batch(["fine"]), acks: 2))
        #expect(r.responses[0].partitionResponses[0].errorCode == .invalidRequiredAcks)

        r = try await conn.send(produceRequest("bad topic!", 0, try batch(["x"])))
        #expect(r.responses[0].partitionResponses[0].errorCode == .invalidTopicException)
        r = try await conn.send(produceRequest("nope", 0, try batch(["x"])))
        #expect(r.responses[0].partitionResponses[0].errorCode == .unknownTopicOrPartition)

        // Nothing bad was stored; a good batch still lands at offset 0.
        r = try await conn.send(produceRequest("bad", 0, try batch(["good"])))
        #expect(r.responses[0].partitionResponses[0].errorCode == .none)
        #expect(r.responses[0].partitionResponses[0].baseOffset == 0)
        await conn.close()
        await b.stop()
    }

    @Test func invalidTopicNamesAreRefusedByMetadataAndCreateTopics() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        let md = try await conn.send(MetadataRequest(topics: [.init(name: "has space"), .init(name: TopicName(String(repeating: "a", count: 250)))]))
        #expect(md.topics.allSatisfy { $0.errorCode == .invalidTopicException })
        var create = CreateTopicsRequest()
        create.topics = [.init(name: "..", numPartitions: 1, replicationFactor: 1),
                         .init(name: "ok-topic", numPartitions: 0, replicationFactor: 1),
                         .init(name: "ok-topic2", numPartitions: 1, replicationFactor: 3),
                         .init(name: "ok-topic3", numPartitions: 1, replicationFactor: 1, configs: [.init(name: "retention.ms", value: "soon")])]
        let cr = try await conn.send(create)
        #expect(cr.topics.map(\.errorCode) == [ErrorCode.invalidTopicException, .invalidPartitions, .invalidReplicationFactor, .invalidConfig])
        #expect(cr.topics.allSatisfy { ($0.errorMessage ?? "").isEmpty == false })
        await conn.close()
        await b.stop()
    }

    @Test func idempotentRetryReturnsOriginalOffset() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        let pid = try await conn.send(InitProducerIDRequest(transactionalID: nil, transactionTimeoutMs: 1000))
        #expect(pid.errorCode == .none && pid.producerID.rawValue >= 0 && pid.producerEpoch == 0)
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "idem")]))
        let first = try await conn.send(produceRequest("idem", 0, try batch(["a", "b"], producerID: pid.producerID.rawValue, epoch: 0, sequence: 0), acks: -1))
        let retry = try await conn.send(produceRequest("idem", 0, try batch(["a", "b"], producerID: pid.producerID.rawValue, epoch: 0, sequence: 0), acks: -1))
        #expect(first.responses[0].partitionResponses[0].baseOffset == 0)
        #expect(retry.responses[0].partitionResponses[0].errorCode == .none)
        #expect(retry.responses[0].partitionResponses[0].baseOffset == 0, "a retried batch is answered with its original offset")
        let gap = try await conn.send(produceRequest("idem", 0, try batch(["z"], producerID: pid.producerID.rawValue, epoch: 0, sequence: 7)))
        #expect(gap.responses[0].partitionResponses[0].errorCode == .outOfOrderSequenceNumber)
        // KIP-360 epoch bump keeps the id.
        let bumped = try await conn.send(InitProducerIDRequest(transactionalID: nil, producerID: pid.producerID, producerEpoch: 0), version: 4)
        #expect(bumped.producerID == pid.producerID && bumped.producerEpoch == 1)
        let txn = try await conn.send(InitProducerIDRequest(transactionalID: "txn-1", transactionTimeoutMs: 1000))
        #expect(txn.errorCode == .transactionalIDAuthorizationFailed)
        await conn.close()
        await b.stop()
    }

    @Test func fetchLongPollWaitsWithoutSpinningAndWakesOnAppend() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        let producer = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "poll")]))
        var fetch = FetchRequest()
        fetch.maxWaitMs = 1000
        fetch.minBytes = 1
        fetch.topics = [.init(topic: "poll", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)])]

        // Nothing arrives: the answer comes after max_wait_ms, and the broker looked at the
        // partition only when the request arrived (twice: before and after registering its waiter).
        let evaluationsBefore = b.server.broker.stats.fetchEvaluations.load(ordering: .relaxed)
        let t0 = ContinuousClock.now
        let empty = try await conn.send(fetch, version: 12)
        let waited = ContinuousClock.now - t0
        let evaluations = b.server.broker.stats.fetchEvaluations.load(ordering: .relaxed) - evaluationsBefore
        #expect(waited >= .milliseconds(950) && waited < .seconds(15))
        #expect(evaluations <= 3, "a 1 s long poll looked at its partitions \(evaluations) times: it must wait, not poll")
        #expect(empty.responses[0].partitions[0].records?.byteCount == 0)

        // Data arriving mid-wait completes the fetch at once. The timer is a minute, so a fetch
        // woken by the append is told from one that ran out even when the machine is slow (CI: 9.5 s
        // on a starved test pool against a 10 s timer).
        fetch.maxWaitMs = 60_000
        let t1 = ContinuousClock.now
        async let answer = conn.send(fetch, version: 12, timeout: .seconds(70))
        try await Task.sleep(for: .milliseconds(200))
        _ = try await producer.send(produceRequest("poll", 0, try batch(["wake", "up"])))
        let got = try await answer
        #expect(ContinuousClock.now - t1 < .seconds(30), "woken by the append, not by the 60 s timer")
        let p = got.responses[0].partitions[0]
        #expect(p.highWatermark == 2 && p.lastStableOffset == 2 && p.logStartOffset == 0)
        #expect(p.abortedTransactions == [])
        guard case .bytes(let bytes)? = p.records else { Issue.record("no records"); return }
        #expect(try RecordBatch.records(in: bytes, at: bytes.readerIndex).map { String(buffer: $0.value!) } == ["wake", "up"])
        await conn.close()
        await producer.close()
        await b.stop()
    }

    @Test func fetchReturnsAWholeBatchEvenAboveMaxBytesAndHonoursLimits() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "big")]))
        let large = try batch((0..<50).map { "record-\($0)-" + String(repeating: "x", count: 100) })
        _ = try await conn.send(produceRequest("big", 0, large))
        _ = try await conn.send(produceRequest("big", 0, try batch(["tail"])))
        var fetch = FetchRequest()
        fetch.maxWaitMs = 0
        fetch.maxBytes = 10
        fetch.topics = [.init(topic: "big", partitions: [.init(partition: 0, fetchOffset: 3, partitionMaxBytes: 10)])]
        let r = try await conn.send(fetch, version: 11)
        guard case .bytes(let bytes)? = r.responses[0].partitions[0].records else { Issue.record("no records"); return }
        #expect(bytes.readableBytes == large.readableBytes, "exactly the first whole batch (KIP-74)")
        #expect(r.responses[0].partitions[0].preferredReadReplica == -1)
        // An offset past the end is OFFSET_OUT_OF_RANGE.
        fetch.topics[0].partitions[0].fetchOffset = 99
        let oor = try await conn.send(fetch, version: 11)
        #expect(oor.responses[0].partitions[0].errorCode == .offsetOutOfRange)
        await conn.close()
        await b.stop()
    }

    @Test func unknownApiKeyClosesTheConnection() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        var w = KafkaWriter()
        let at = KafkaFrame.begin(&w)
        RequestHeader(apiKey: ApiKey(rawValue: 4000), apiVersion: 0, correlationID: 0, clientID: "x").encode(to: &w, headerVersion: 1)
        KafkaFrame.finish(&w, sizeAt: at)
        await #expect(throws: KafkaConnectionError.self) { _ = try await conn.sendFrame(w.buffer).get() }
        // The broker keeps serving new connections.
        let again = try await b.connect()
        _ = try await again.send(MetadataRequest(topics: nil))
        await again.close()
        await b.stop()
    }

    @Test func configsCanBeDescribedAndAltered() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        var create = CreateTopicsRequest()
        create.topics = [.init(name: "cfg", numPartitions: 2, replicationFactor: -1, configs: [.init(name: "retention.ms", value: "1000")])]
        let created = try await conn.send(create, version: 7)
        #expect(created.topics[0].errorCode == .none && created.topics[0].numPartitions == 2 && created.topics[0].topicID != .zero)
        var alter = IncrementalAlterConfigsRequest()
        alter.resources = [.init(resourceType: 2, resourceName: "cfg", configs: [
            .init(name: "retention.ms", configOperation: 1, value: nil),
            .init(name: "cleanup.policy", configOperation: 2, value: "compact"),
            .init(name: "segment.bytes", configOperation: 0, value: "4096"),
        ])]
        #expect(try await conn.send(alter).responses[0].errorCode == .none)
        var describe = DescribeConfigsRequest()
        describe.resources = [.init(resourceType: 2, resourceName: "cfg", configurationKeys: nil)]
        let d = try await conn.send(describe, version: 4)
        let byName = Dictionary(uniqueKeysWithValues: d.results[0].configs.map { ($0.name, $0) })
        #expect(byName["retention.ms"]?.value == "604800000" && byName["retention.ms"]?.configSource == 5)
        #expect(byName["cleanup.policy"]?.value == "delete,compact" && byName["cleanup.policy"]?.configSource == 1)
        #expect(byName["segment.bytes"]?.value == "4096")
        var bad = IncrementalAlterConfigsRequest()
        bad.resources = [.init(resourceType: 2, resourceName: "cfg", configs: [.init(name: "segment.bytes", configOperation: 0, value: "-5")])]
        #expect(try await conn.send(bad).responses[0].errorCode == .invalidConfig)
        var partitions = CreatePartitionsRequest()
        partitions.topics = [.init(name: "cfg", count: 5, assignments: nil)]
        #expect(try await conn.send(partitions).results[0].errorCode == .none)
        let md = try await conn.send(MetadataRequest(topics: [.init(name: "cfg")]))
        #expect(md.topics[0].partitions.count == 5)
        partitions.topics = [.init(name: "cfg", count: 3, assignments: nil)]
        #expect(try await conn.send(partitions).results[0].errorCode == .invalidPartitions)
        var delete = DeleteTopicsRequest()
        delete.topicNames = ["cfg", "missing"]
        let del = try await conn.send(delete, version: 5)
        #expect(del.responses.map(\.errorCode) == [.none, .unknownTopicOrPartition])
        await conn.close()
        await b.stop()
    }
}
