@testable import Broker
import ClusterMetadata
import FileLayer
import Foundation
import KafkaProtocol
import Logging
import LogStorage
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// Power cuts at thousands of random points of a broker's storage work (topic creation, appends,
/// rolls, flushes, commits, checkpoints), on a file system that keeps only what was made durable
/// plus a random prefix of the rest. After each cut the storage is opened again and must hold every
/// acknowledged acks=all record and every acknowledged commit, and every record a consumer read
/// before the cut, with the same contents.
@Suite("Crash consistency", .timeLimit(.minutes(5)))
struct CrashConsistencyTests {
    static let quiet = Logger(label: "crash-test") { _ in SwiftLogNoOpLogHandler() }

    /// The storage of one broker: metadata store, logs and group coordinator on a file system.
    final class Storage {
        let flusher: LogFlusher
        let logs: LogManager
        let groups: GroupCoordinator

        init(_ fs: any FileSystem) throws {
            let store = try EmbeddedMetadataStore(fs: fs, directory: "/data", brokerID: 1)
            flusher = LogFlusher(threads: 1, logger: CrashConsistencyTests.quiet)
            logs = try LogManager(fs: fs, dataDirectory: "/data", store: store, flusher: flusher, brokerDefaults: [:],
                                  durableHighWatermark: true, logger: CrashConsistencyTests.quiet)
            var settings = GroupCoordinator.Settings()
            settings.offsetsTopicPartitions = 2
            groups = try GroupCoordinator(logs: logs, settings: settings, timerLoop: MultiThreadedEventLoopGroup.singleton.next(),
                                          logger: CrashConsistencyTests.quiet)
        }

        /// Every record of a partition, by offset (CRC-checked on the way).
        func records(_ topic: TopicName, _ p: Int32) throws -> [Int64: String] {
            guard let log = logs.log(topic, p) else { return [:] }
            var out: [Int64: String] = [:]
            var next = log.offsets.logStartOffset
            while let slice = try log.read(offset: next, maxBytes: 1 << 20).slice {
                let bytes = try slice.file.read(at: slice.position, length: slice.length)
                for (h, i) in RecordBatch.batches(in: bytes) {
                    _ = try RecordBatch.validate(bytes, at: i)
                    for r in try RecordBatch.records(in: bytes, at: i) { out[r.offset] = String(buffer: r.value!) }
                    next = h.nextOffset
                }
            }
            return out
        }
    }

    /// What was acknowledged or served before the cut, to be found after it.
    struct Promises {
        var topicCreated = false
        var acked: [Int32: [Int64: String]] = [:]
        var served: [Int32: [Int64: String]] = [:]
        var committed: [Int32: Int64] = [:]
        var attemptedCommits: [Int32: Set<Int64>] = [:]
    }

    static let topic: TopicName = "crash"
    static let group: GroupID = "crash-group"

    /// Runs a random workload on `fs`; records promises made while `fs` had not cut the power yet.
    static func workload(_ fs: CrashSimulatingFileSystem, seed: UInt64) -> Promises {
        var rng = SplitMix64(seed: seed)
        var promises = Promises()
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        func beforeCut() -> Bool { fs.image == nil }
        guard let storage = try? Storage(fs) else { return promises }
        defer { storage.flusher.shutdown() }
        do {
            try storage.logs.createTopic(topic, partitions: 2, replicationFactor: 1,
                                         configs: ["segment.bytes": "1024", "index.interval.bytes": "200"])
            promises.topicCreated = beforeCut()
        } catch {
            return promises
        }
        var n = 0
        var nextCommit: [Int32: Int64] = [0: 0, 1: 0]
        for _ in 0..<40 {
            let p = Int32(rng.next() % 2)
            guard let partition = storage.logs.partition(topic, p) else { break }
            switch rng.next() % 20 {
            case 0..<9:
                // acks=all: acknowledged once flushed.
                var b = RecordBatchBuilder()
                var values: [String] = []
                for _ in 0..<Int(1 + rng.next() % 4) {
                    n += 1
                    values.append("s\(seed)-r\(n)-" + String(repeating: "x", count: Int(rng.next() % 120)))
                    b.append(key: nil, value: ByteBuffer(string: values.last!), timestamp: 1_000 + Int64(n))
                }
                guard let r = try? partition.append(try! b.build(), nowMs: 10_000, allowRoll: true),
                      (try? partition.flush(upTo: r.lastOffset + 1, on: loop).wait()) != nil else { continue }
                if beforeCut() {
                    for (i, v) in values.enumerated() { promises.acked[p, default: [:]][r.baseOffset + Int64(i)] = v }
                }
            case 9..<13:
                // acks=1: nothing promised until a consumer reads it.
                n += 1
                var b = RecordBatchBuilder()
                b.append(key: nil, value: ByteBuffer(string: "s\(seed)-r\(n)"), timestamp: 1_000 + Int64(n))
                _ = try? partition.append(try! b.build(), nowMs: 10_000, allowRoll: true)
            case 13..<16:
                // A consumer reads up to the high watermark.
                var next = partition.offsets.logStartOffset
                var seen: [Int64: String] = [:]
                while let (r, _) = try? partition.read(offset: next, maxBytes: 1 << 20), let slice = r.slice,
                      let bytes = try? slice.file.read(at: slice.position, length: slice.length) {
                    for (h, i) in RecordBatch.batches(in: bytes) {
                        for rec in (try? RecordBatch.records(in: bytes, at: i)) ?? [] { seen[rec.offset] = String(buffer: rec.value!) }
                        next = h.nextOffset
                    }
                }
                if beforeCut() { promises.served[p, default: [:]].merge(seen) { a, _ in a } }
            case 16..<19:
                // A standalone commit, acknowledged once durable.
                nextCommit[p, default: 0] += 1 + Int64(rng.next() % 5)
                let offset = nextCommit[p]!
                promises.attemptedCommits[p, default: []].insert(offset)
                let req = GroupCoordinator.CommitRequest(memberID: "", groupInstanceID: nil, generation: -1, offsets: [
                    (TopicPartition(topic, p), CommittedOffset(offset: offset, leaderEpoch: -1, metadata: "", commitTimestamp: 10_000)),
                ])
                if let codes = try? storage.groups.commit(group, req, on: loop).wait(), codes == [.none], beforeCut() {
                    promises.committed[p] = offset
                }
            default:
                try? storage.logs.writeRecoveryPoints()
                storage.logs.rollAhead()
            }
        }
        return promises
    }

    @Test func recoveryKeepsEverythingAcknowledgedAcrossThousandsOfPowerCuts() async throws {
        // How many file operations a workload takes, to spread the cut points over all of it.
        let probe = CrashSimulatingFileSystem(seed: 7)
        _ = Self.workload(probe, seed: 7)
        let span = max(100, probe.operationCount)
        let iterations = 2_000
        var checked = (records: 0, commits: 0, served: 0)
        for iteration in 0..<iterations {
            // CPU-bound for half a minute: let the other tests on this thread pool run in between.
            await Task.yield()
            let seed = UInt64(iteration) &* 0x9E37_79B9 &+ 11
            var rng = SplitMix64(seed: seed)
            let fs = CrashSimulatingFileSystem(seed: seed)
            fs.cutAfterOperations(Int(rng.next() % UInt64(span + span / 10)))
            let promises = Self.workload(fs, seed: seed)
            let image = fs.image ?? fs.cutPower()
            let storage: Storage
            do {
                storage = try Storage(image)
            } catch {
                Issue.record("iteration \(iteration) (seed \(seed)): storage does not open after the cut: \(error)")
                continue
            }
            defer { storage.flusher.shutdown() }
            if promises.topicCreated {
                #expect(storage.logs.topic(Self.topic) != nil, "iteration \(iteration): an acknowledged topic creation was lost")
            }
            for p in Int32(0)...1 {
                let after = try storage.records(Self.topic, p)
                for (offset, value) in promises.acked[p] ?? [:] {
                    #expect(after[offset] == value, "iteration \(iteration) (seed \(seed)): acked \(Self.topic)-\(p)@\(offset) is \(after[offset] ?? "missing")")
                    checked.records += 1
                }
                for (offset, value) in promises.served[p] ?? [:] {
                    #expect(after[offset] == value, "iteration \(iteration) (seed \(seed)): \(Self.topic)-\(p)@\(offset) was read as \(value), now \(after[offset] ?? "missing")")
                    checked.served += 1
                }
                let commit = storage.groups.fetchOffsets(Self.group, [TopicPartition(Self.topic, p)])[TopicPartition(Self.topic, p)]
                if let promised = promises.committed[p] {
                    #expect((commit?.offset ?? -1) >= promised, "iteration \(iteration) (seed \(seed)): commit \(promised) of partition \(p) lost (now \(commit?.offset ?? -1))")
                    checked.commits += 1
                }
                if let c = commit {
                    #expect(promises.attemptedCommits[p]?.contains(c.offset) == true, "iteration \(iteration): commit \(c.offset) was never made")
                }
                // The recovered log takes new writes after what it kept.
                if let partition = storage.logs.partition(Self.topic, p) {
                    var b = RecordBatchBuilder()
                    b.append(key: nil, value: ByteBuffer(string: "after"), timestamp: 99_000)
                    let r = try partition.append(try b.build(), nowMs: 100_000, allowRoll: true)
                    #expect(r.baseOffset == partition.offsets.logEndOffset - 1)
                    #expect(after.keys.allSatisfy { $0 < r.baseOffset })
                }
            }
        }
        #expect(checked.records > 5_000 && checked.commits > 500 && checked.served > 1_000,
                "the cuts landed after enough acknowledgements to mean something: \(checked)")
    }
}
