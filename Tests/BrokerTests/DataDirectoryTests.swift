@testable import Broker
import ClusterMetadata
import FileLayer
import Foundation
import KafkaProtocol
import KafkaWire
import Logging
import LogStorage
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// The broker never destroys a data directory, and what a consumer may read is what survives.
@Suite("Data directory and durability edges", .timeLimit(.minutes(2)))
struct DataDirectoryTests {
    func produce(_ conn: KafkaConnection, _ topic: TopicName, _ values: [String], partition: Int32 = 0,
                 acks: Int16 = -1) async throws -> ProduceResponse.PartitionProduceResponse {
        try await conn.send(produceRequest(topic, partition, try batch(values), acks: acks), version: 9).responses[0].partitionResponses[0]
    }

    func fetchValues(_ conn: KafkaConnection, _ topic: TopicName, from offset: Int64 = 0, currentLeaderEpoch: Int32 = -1)
        async throws -> (values: [String], error: ErrorCode, highWatermark: Int64, epochs: Set<Int32>) {
        var fetch = FetchRequest()
        fetch.maxWaitMs = 0
        fetch.maxBytes = 1 << 20
        fetch.topics = [.init(topic: topic, partitions: [.init(partition: 0, currentLeaderEpoch: currentLeaderEpoch, fetchOffset: offset,
                                                               partitionMaxBytes: 1 << 20)])]
        let p = try await conn.send(fetch, version: 11).responses[0].partitions[0]
        var values: [String] = []
        var epochs = Set<Int32>()
        if case .bytes(let bytes)? = p.records {
            for (h, i) in RecordBatch.batches(in: bytes) {
                epochs.insert(h.partitionLeaderEpoch)
                values += try RecordBatch.records(in: bytes, at: i).filter { $0.offset >= offset }.map { String(buffer: $0.value!) }
            }
        }
        return (values, p.errorCode, p.highWatermark, epochs)
    }

    @Test func aMissingTopicListStopsTheBrokerAndKeepsEveryFile() async throws {
        let b = try await InProcessBroker()
        let dir = b.dir
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "precious")]))
        #expect(try await produce(conn, "precious", ["keep me"]).errorCode == .none)
        await conn.close()
        await b.server.stop()
        try FileManager.default.removeItem(atPath: dir + "/topics.json")
        try FileManager.default.createDirectory(atPath: dir + "/backup-2024", withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: dir + "/backup-2024/notes.txt"))
        await #expect {
            _ = try await InProcessBroker(directory: dir)
        } throws: { error in
            "\(error)".contains("topics.json") && "\(error)".contains("Restore")
        }
        #expect(FileManager.default.fileExists(atPath: dir + "/precious-0/00000000000000000000.log"))
        #expect(FileManager.default.fileExists(atPath: dir + "/backup-2024/notes.txt"))
        #expect(FileManager.default.fileExists(atPath: dir + "/__consumer_offsets-0"))
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test func aDamagedProducerIDBlockIsAStartupErrorNotARestartFromZero() async throws {
        let b = try await InProcessBroker()
        let dir = b.dir
        await b.server.stop()
        try "garbage\n".write(toFile: dir + "/producer-id-block", atomically: true, encoding: .utf8)
        await #expect { _ = try await InProcessBroker(directory: dir) } throws: { "\($0)".contains("producer-id-block") }
        try FileManager.default.removeItem(atPath: dir + "/producer-id-block")
        await #expect { _ = try await InProcessBroker(directory: dir) } throws: { "\($0)".contains("producer-id-block") }
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test func directoriesTheBrokerDoesNotKnowSurviveRestarts() async throws {
        var b = try await InProcessBroker()
        let dir = b.dir
        for name in ["backup-2024", "orders-7", "notes"] {
            try FileManager.default.createDirectory(atPath: "\(dir)/\(name)", withIntermediateDirectories: true)
            try Data("x".utf8).write(to: URL(fileURLWithPath: "\(dir)/\(name)/file"))
        }
        await b.server.stop()
        b = try await InProcessBroker(directory: dir)
        await b.server.stop()
        for name in ["backup-2024", "orders-7", "notes"] {
            #expect(FileManager.default.fileExists(atPath: "\(dir)/\(name)/file"), "\(name) was left alone")
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test func deletingAndRecreatingATopicNeverLosesAnAcknowledgedAppend() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        let logs = b.server.broker.logs
        let segment = "\(b.dir)/churn-0/00000000000000000000.log"
        for round in 0..<40 {
            try logs.createTopic("churn", partitions: 1, replicationFactor: 1, configs: [:])
            #expect(try await produce(conn, "churn", ["old-\(round)"]).errorCode == .none)
            // The deletion races a re-creation (as a producer's auto-create would).
            async let deletion: Void = Task.detached { _ = try? logs.deleteTopic("churn") }.value
            async let creation: Void = Task.detached {
                while true {
                    do {
                        try logs.createTopic("churn", partitions: 1, replicationFactor: 1, configs: [:])
                        return
                    } catch let e as BrokerError where e.code == .topicAlreadyExists {
                        await Task.yield()
                    } catch {
                        return
                    }
                }
            }.value
            _ = await (deletion, creation)
            if logs.topic("churn") == nil { try logs.createTopic("churn", partitions: 1, replicationFactor: 1, configs: [:]) }
            let r = try await produce(conn, "churn", ["new-\(round)"], acks: -1)
            #expect(r.errorCode == .none)
            // Acknowledged means on disk under the topic's directory, whatever the old one's removal does.
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline, (try FileManager.default.contentsOfDirectory(atPath: b.dir)).contains(where: { $0.hasSuffix("-delete") }) {
                try await Task.sleep(for: .milliseconds(5))
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int) ?? nil
            #expect((size ?? 0) > 0, "round \(round): the new topic's segment is gone")
            let after = try await fetchValues(conn, "churn")
            #expect(after.values.last == "new-\(round)", "round \(round): \(after.values)")
            _ = try logs.deleteTopic("churn")
        }
        await conn.close()
        await b.stop()
    }

    @Test func consumersSeeOnlyWhatIsDurable() async throws {
        let fs = CrashSimulatingFileSystem(seed: 3)
        let gate = SyncGate()
        let b = try await InProcessBroker(directory: "/data", fs: fs)
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "hw")]))
        fs.setSyncGate { gate.pass() }
        gate.close()
        #expect(try await produce(conn, "hw", ["written"], acks: 1).errorCode == .none, "acks=1 answers once written")
        let before = try await fetchValues(conn, "hw")
        #expect(before.values.isEmpty && before.highWatermark == 0, "not durable yet, not visible: \(before)")
        gate.open()
        let deadline = Date().addingTimeInterval(10)
        var after = before
        while Date() < deadline && after.values.isEmpty {
            try await Task.sleep(for: .milliseconds(5))
            after = try await fetchValues(conn, "hw")
        }
        #expect(after.values == ["written"] && after.highWatermark == 1, "visible after the group-committed flush")
        fs.setSyncGate(nil)
        await conn.close()
        await b.server.stop()
    }

    @Test func aFailedFsyncTakesThePartitionOffline() async throws {
        let fs = CrashSimulatingFileSystem(seed: 4)
        let b = try await InProcessBroker(directory: "/data", fs: fs)
        let conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "disk")]))
        #expect(try await produce(conn, "disk", ["ok"], acks: -1).errorCode == .none)
        fs.failSyncs(true)
        let failed = try await produce(conn, "disk", ["lost?"], acks: -1)
        #expect(failed.errorCode == .kafkaStorageError, "an unsynced write is not acknowledged")
        fs.failSyncs(false)
        // No later write is acknowledged after bytes the disk may have lost.
        #expect(try await produce(conn, "disk", ["later"], acks: -1).errorCode == .kafkaStorageError)
        #expect(try await produce(conn, "disk", ["later"], acks: 1).errorCode == .kafkaStorageError)
        let md = try await conn.send(MetadataRequest(topics: [.init(name: "disk")]))
        #expect(md.topics[0].partitions[0].errorCode == .kafkaStorageError)
        #expect(md.topics[0].partitions[0].leaderID == -1)
        await conn.close()
        await b.server.stop()
    }

    @Test func anIdempotentDuplicateIsAnsweredOnlyOnceTheOriginalIsDurable() async throws {
        let fs = CrashSimulatingFileSystem(seed: 5)
        let gate = SyncGate()
        let b = try await InProcessBroker(directory: "/data", fs: fs)
        let first = try await b.connect()
        let second = try await b.connect()
        _ = try await first.send(MetadataRequest(topics: [.init(name: "dup")]))
        let records = try batch(["once"], producerID: 77, epoch: 0, sequence: 0)
        fs.setSyncGate { gate.pass() }
        gate.close()
        let original: EventLoopFuture<ProduceResponse> = first.send(produceRequest("dup", 0, records, acks: -1), version: 9)
        // Give the original time to be appended; its fsync is held by the gate.
        try await Task.sleep(for: .milliseconds(200))
        let retry: EventLoopFuture<ProduceResponse> = second.send(produceRequest("dup", 0, records, acks: -1), version: 9)
        let early = try await firstOf(seconds: 1) { try await retry.get() }
        #expect(early == nil, "the retry must wait for the original's fsync")
        gate.open()
        let a = try await original.get().responses[0].partitionResponses[0]
        let r = try await retry.get().responses[0].partitionResponses[0]
        #expect(a.errorCode == .none && r.errorCode == .none && a.baseOffset == r.baseOffset)
        fs.setSyncGate(nil)
        await first.close()
        await second.close()
        await b.server.stop()
    }

    @Test func leaderEpochsAreBumpedPerStartAndServed() async throws {
        var b = try await InProcessBroker()
        let dir = b.dir
        var conn = try await b.connect()
        var md = try await conn.send(MetadataRequest(topics: [.init(name: "epochs")]), version: 9)
        #expect(md.topics[0].partitions[0].leaderEpoch == 0)
        #expect(try await produce(conn, "epochs", ["e0-a", "e0-b"], acks: -1).errorCode == .none)
        #expect(try await fetchValues(conn, "epochs").epochs == [0], "batches are stamped with the epoch")
        await conn.close()
        await b.server.stop()

        b = try await InProcessBroker(directory: dir)
        conn = try await b.connect()
        md = try await conn.send(MetadataRequest(topics: [.init(name: "epochs")]), version: 9)
        #expect(md.topics[0].partitions[0].leaderEpoch == 1, "a restart is a new leadership")
        #expect(try await produce(conn, "epochs", ["e1-a"], acks: -1).errorCode == .none)
        #expect(try await fetchValues(conn, "epochs").epochs == [0, 1])
        // A client still on epoch 0 is fenced; one from the future is told the epoch is unknown.
        #expect(try await fetchValues(conn, "epochs", currentLeaderEpoch: 0).error == .fencedLeaderEpoch)
        #expect(try await fetchValues(conn, "epochs", currentLeaderEpoch: 7).error == .unknownLeaderEpoch)
        #expect(try await fetchValues(conn, "epochs", currentLeaderEpoch: 1).values == ["e0-a", "e0-b", "e1-a"])
        var ofle = OffsetForLeaderEpochRequest()
        ofle.topics = [.init(topic: "epochs", partitions: [.init(partition: 0, currentLeaderEpoch: 1, leaderEpoch: 0),
                                                           .init(partition: 0, currentLeaderEpoch: 1, leaderEpoch: 1)])]
        let ends = try await conn.send(ofle, version: 3).topics[0].partitions
        #expect(ends[0].errorCode == .none && ends[0].leaderEpoch == 0 && ends[0].endOffset == 2, "epoch 0 ended where epoch 1 began")
        #expect(ends[1].leaderEpoch == 1 && ends[1].endOffset == 3, "the current epoch ends at the log end")
        var list = ListOffsetsRequest()
        list.topics = [.init(name: "epochs", partitions: [.init(partitionIndex: 0, timestamp: -2)])]
        #expect(try await conn.send(list, version: 7).topics[0].partitions[0].leaderEpoch == 0)
        await conn.close()
        await b.stop()
    }

    @Test func initProducerIDBumpsOnlyTheEpochItGrantedLast() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        var req = InitProducerIDRequest()
        req.transactionalID = nil
        let a = try await conn.send(req, version: 4)
        #expect(a.errorCode == .none && a.producerEpoch == 0)
        // Another client naming A's id with a made-up epoch gets an id of its own.
        req.producerID = a.producerID
        req.producerEpoch = 5
        let intruder = try await conn.send(req, version: 4)
        #expect(intruder.producerID != a.producerID && intruder.producerEpoch == 0)
        // A itself asks for a bump with what it was given.
        req.producerEpoch = 0
        let bumped = try await conn.send(req, version: 4)
        #expect(bumped.producerID == a.producerID && bumped.producerEpoch == 1)
        // Replaying the old epoch does not bump again (it would fence A's epoch 1).
        let replay = try await conn.send(req, version: 4)
        #expect(replay.producerID != a.producerID)
        await conn.close()
        await b.stop()
    }

    @Test func unreadableOffsetsRecordsAreSkippedOnLoad() async throws {
        var b = try await InProcessBroker()
        let dir = b.dir
        var conn = try await b.connect()
        _ = try await conn.send(MetadataRequest(topics: [.init(name: "t")]))
        var commit = OffsetCommitRequest()
        commit.groupID = "survivor"
        commit.generationIDOrMemberEpoch = -1
        commit.topics = [.init(name: "t", partitions: [.init(partitionIndex: 0, committedOffset: 17, committedMetadata: "")])]
        #expect(try await conn.send(commit, version: 8).topics[0].partitions[0].errorCode == .none)
        await conn.close()
        await b.server.stop()
        // Damage: records no version of the layout can decode, in every partition.
        for p in Int32(0)..<4 {
            let log = try PartitionLog.open(directory: "\(dir)/__consumer_offsets-\(p)", topic: GroupCoordinator.topicName, partition: p,
                                            config: LogConfig(overrides: ["cleanup.policy": "compact"]), nowMs: 0,
                                            logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
            var bad = RecordBatchBuilder()
            bad.append(key: ByteBuffer(bytes: [0, 1, 0x7F]), value: ByteBuffer(bytes: [0, 9]), timestamp: 1)
            bad.append(key: ByteBuffer(bytes: [0, 2, 0, 200]), value: ByteBuffer(bytes: [1]), timestamp: 1)
            _ = try log.append(try bad.build(), nowMs: 1)
            log.close()
        }
        b = try await InProcessBroker(directory: dir)
        conn = try await b.connect()
        var fetch = OffsetFetchRequest()
        fetch.groupID = "survivor"
        fetch.topics = nil
        let got = try await conn.send(fetch, version: 7)
        #expect(got.topics.flatMap(\.partitions).map(\.committedOffset) == [17])
        await conn.close()
        await b.stop()
    }
}

/// Holds file syncs of a ``CrashSimulatingFileSystem`` while closed.
final class SyncGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var closed = false

    func close() { condition.lock(); closed = true; condition.unlock() }

    func open() {
        condition.lock()
        closed = false
        condition.broadcast()
        condition.unlock()
    }

    func pass() {
        condition.lock()
        while closed { condition.wait() }
        condition.unlock()
    }
}
