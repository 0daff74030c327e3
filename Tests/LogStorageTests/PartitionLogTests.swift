import Foundation
import KafkaProtocol
import Logging
import NIOCore
import Testing
@testable import LogStorage

/// A fresh temporary directory for one test, removed afterwards.
final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "meridian-log-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

func batch(_ values: [String], keys: [String?]? = nil, timestamp: Int64 = 1_000, producerID: Int64 = -1,
           epoch: Int16 = -1, sequence: Int32 = -1, codec: CompressionCodec = .none) throws -> ByteBuffer {
    var b = RecordBatchBuilder(producerID: producerID, producerEpoch: epoch, baseSequence: sequence)
    for (i, v) in values.enumerated() {
        let k = keys?[i].map { ByteBuffer(string: $0) }
        b.append(key: k, value: ByteBuffer(string: v), timestamp: timestamp + Int64(i))
    }
    return try b.build(compression: codec)
}

/// Reads every record from `offset` to the high watermark.
func readAll(_ log: PartitionLog, from offset: Int64 = 0) throws -> [Record] {
    var out: [Record] = []
    var next = max(offset, log.offsets.logStartOffset)
    while true {
        let r = try log.read(offset: next, maxBytes: 64 * 1024)
        guard let slice = r.slice else { break }
        let bytes = try slice.file.read(at: slice.position, length: slice.length)
        let batches = RecordBatch.batches(in: bytes)
        #expect(!batches.isEmpty)
        for (h, i) in batches {
            _ = try RecordBatch.validate(bytes, at: i)
            for rec in try RecordBatch.records(in: bytes, at: i) where rec.offset >= next { out.append(rec) }
            next = h.nextOffset
        }
    }
    return out
}

let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

@Suite("Partition log", .timeLimit(.minutes(2)))
struct PartitionLogTests {
    func open(_ dir: TempDir, _ overrides: [String: String] = [:]) throws -> PartitionLog {
        try PartitionLog.open(directory: dir.path + "/t-0", topic: "t", partition: 0,
                              config: LogConfig(overrides: overrides), nowMs: 10_000, logger: quiet)
    }

    @Test func appendAssignsContiguousOffsetsAndReadsBack() throws {
        let dir = TempDir()
        let log = try open(dir)
        var expected: [String] = []
        for i in 0..<20 {
            let values = (0..<(i % 4 + 1)).map { "v\(i)-\($0)" }
            let r = try log.append(try batch(values), nowMs: 10_000)
            #expect(r.baseOffset == Int64(expected.count))
            #expect(r.lastOffset == Int64(expected.count + values.count - 1))
            expected += values
        }
        #expect(log.offsets == .init(logStartOffset: 0, durableOffset: 0, logEndOffset: Int64(expected.count)))
        let records = try readAll(log)
        #expect(records.map { String(buffer: $0.value!) } == expected)
        #expect(records.map(\.offset) == (0..<Int64(expected.count)).map { $0 })
        // Reading from the middle of a batch returns that whole batch.
        let mid = try readAll(log, from: 5)
        #expect(mid.first?.offset == 5)
        log.close()
    }

    @Test func rollsBySegmentBytesAndFindsOffsetsAcrossSegments() throws {
        let dir = TempDir()
        let log = try open(dir, ["segment.bytes": "2048", "index.interval.bytes": "200"])
        for i in 0..<200 { _ = try log.append(try batch(["value-\(i)-" + String(repeating: "x", count: 50)]), nowMs: 10_000) }
        #expect(log.segmentCount > 5)
        for probe in [0, 1, 77, 150, 199] as [Int64] {
            let r = try log.read(offset: probe, maxBytes: 1)
            let bytes = try r.slice!.file.read(at: r.slice!.position, length: r.slice!.length)
            let h = try RecordBatchHeader(bytes, at: bytes.readerIndex)
            #expect(h.baseOffset == probe, "a 1-byte fetch still returns the whole batch at \(probe)")
        }
        #expect(throws: LogError.self) { try log.read(offset: 201, maxBytes: 100) }
        log.close()
    }

    @Test func cleanReopenKeepsEverything() throws {
        let dir = TempDir()
        var log = try open(dir, ["segment.bytes": "4096"])
        for i in 0..<100 { _ = try log.append(try batch(["a\(i)", "b\(i)"], timestamp: Int64(i) * 10), nowMs: 10_000) }
        log.close()
        log = try open(dir, ["segment.bytes": "4096"])
        #expect(log.offsets.logEndOffset == 200)
        #expect(try readAll(log).count == 200)
        let r = try log.append(try batch(["after"]), nowMs: 10_000)
        #expect(r.baseOffset == 200)
        log.close()
    }

    @Test func tornTailIsCutToTheLastWholeBatch() throws {
        let dir = TempDir()
        let log = try open(dir)
        for i in 0..<10 { _ = try log.append(try batch(["r\(i)", "s\(i)"]), nowMs: 10_000) }
        // Simulate a crash: no close(), then cut the file in the middle of the last batch.
        let segPath = dir.path + "/t-0/00000000000000000000.log"
        let size = try FileManager.default.attributesOfItem(atPath: segPath)[.size] as! Int
        let fh = FileHandle(forWritingAtPath: segPath)!
        try fh.truncate(atOffset: UInt64(size - 9))
        try fh.close()
        let reopened = try open(dir)
        #expect(reopened.offsets.logEndOffset == 18)
        let records = try readAll(reopened)
        #expect(records.count == 18)
        #expect(String(buffer: records.last!.value!) == "s8")
        #expect(try reopened.append(try batch(["next"]), nowMs: 10_000).baseOffset == 18)
        reopened.close()
    }

    @Test func corruptBatchInTheTailIsCutAtTheCorruption() throws {
        let dir = TempDir()
        let log = try open(dir)
        var positions: [Int64] = []
        for i in 0..<6 {
            positions.append(log.sizeInBytes)
            _ = try log.append(try batch(["c\(i)"]), nowMs: 10_000)
        }
        let segPath = dir.path + "/t-0/00000000000000000000.log"
        let fh = FileHandle(forUpdatingAtPath: segPath)!
        try fh.seek(toOffset: UInt64(positions[4] + 64))
        try fh.write(contentsOf: Data([0xAA]))
        try fh.close()
        let reopened = try open(dir)
        #expect(reopened.offsets.logEndOffset == 4)
        #expect(try readAll(reopened).map { String(buffer: $0.value!) } == ["c0", "c1", "c2", "c3"])
        reopened.close()
    }

    @Test func missingOrDamagedIndexesAreRebuilt() throws {
        let dir = TempDir()
        var log = try open(dir, ["segment.bytes": "3000", "index.interval.bytes": "100"])
        for i in 0..<120 { _ = try log.append(try batch(["idx-\(i)-" + String(repeating: "y", count: 40)], timestamp: 5_000 + Int64(i)), nowMs: 10_000) }
        log.close()
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/t-0")
        let first = files.filter { $0.hasSuffix(".index") }.sorted()[0]
        try FileManager.default.removeItem(atPath: dir.path + "/t-0/" + first)
        let second = files.filter { $0.hasSuffix(".timeindex") }.sorted()[1]
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir.path + "/t-0/" + second))
        log = try open(dir, ["segment.bytes": "3000", "index.interval.bytes": "100"])
        #expect(try readAll(log).count == 120)
        #expect(try log.offset(forTimestamp: 5_050)?.offset == 50)
        #expect(FileManager.default.fileExists(atPath: dir.path + "/t-0/" + first))
        log.close()
    }

    @Test func offsetForTimestampFindsTheFirstRecordAtOrAfter() throws {
        let dir = TempDir()
        let log = try open(dir, ["segment.bytes": "2000", "index.interval.bytes": "64"])
        // Batches of 3 records, timestamps 100, 101, 102 then 200, 201, 202 ...
        for i in 0..<40 {
            _ = try log.append(try batch(["x", "y", "z"], timestamp: Int64(i + 1) * 100, codec: i % 2 == 0 ? .gzip : .none), nowMs: 10_000)
        }
        #expect(try log.offset(forTimestamp: 0)?.offset == 0)
        #expect(try log.offset(forTimestamp: 101)! == (1, 101))
        #expect(try log.offset(forTimestamp: 150)! == (3, 200))
        #expect(try log.offset(forTimestamp: 2_002)! == (59, 2_002))
        #expect(try log.offset(forTimestamp: 4_002)! == (119, 4_002))
        #expect(try log.offset(forTimestamp: 4_003) == nil)
        #expect(log.maxTimestampOffset! == (119, 4_002))
        log.close()
    }

    @Test func retentionByBytesDeletesOldestSegmentsAndMovesLogStart() throws {
        let dir = TempDir()
        let log = try open(dir, ["segment.bytes": "1200", "retention.bytes": "3000"])
        for i in 0..<100 { _ = try log.append(try batch(["ret-\(i)-" + String(repeating: "z", count: 30)]), nowMs: 10_000) }
        let before = log.segmentCount
        let deleted = try log.enforceRetention(nowMs: 10_000)
        #expect(deleted > 0)
        #expect(log.segmentCount == before - deleted)
        #expect(log.sizeInBytes < 3000 + 1200)
        let start = log.offsets.logStartOffset
        #expect(start == log.segmentBaseOffsets[0] && start > 0)
        #expect(throws: LogError.self) { try log.read(offset: 0, maxBytes: 100) }
        #expect(try readAll(log).first?.offset == start)
        log.close()
    }

    @Test func retentionByTimeDropsExpiredSegmentsIncludingTheActiveOne() throws {
        let dir = TempDir()
        let log = try open(dir, ["segment.bytes": "1000", "retention.ms": "60000"])
        for i in 0..<30 { _ = try log.append(try batch(["old-\(i)" + String(repeating: "o", count: 40)], timestamp: 1_000), nowMs: 10_000) }
        #expect(try log.enforceRetention(nowMs: 30_000) == 0)
        let deleted = try log.enforceRetention(nowMs: 1_000 + 60_001)
        #expect(deleted >= 2)
        #expect(log.offsets.logStartOffset == 30)
        #expect(log.offsets.logEndOffset == 30)
        #expect(try log.append(try batch(["new"]), nowMs: 70_000).baseOffset == 30)
        log.close()
    }

    @Test func idempotentRetryIsAnsweredWithOriginalOffset() throws {
        let dir = TempDir()
        var log = try open(dir)
        _ = try log.append(try batch(["plain"]), nowMs: 10_000)
        let first = try log.append(try batch(["a", "b"], producerID: 7, epoch: 0, sequence: 0), nowMs: 10_000)
        let second = try log.append(try batch(["c"], producerID: 7, epoch: 0, sequence: 2), nowMs: 10_000)
        let retry = try log.append(try batch(["a", "b"], producerID: 7, epoch: 0, sequence: 0), nowMs: 10_000)
        #expect(retry.isDuplicate && retry.baseOffset == first.baseOffset)
        #expect(log.offsets.logEndOffset == 4)
        #expect(throws: LogError.outOfOrderSequence(producerID: 7, expected: 3, got: 5)) {
            try log.append(try batch(["gap"], producerID: 7, epoch: 0, sequence: 5), nowMs: 10_000)
        }
        #expect(throws: LogError.self) { try log.append(try batch(["bump"], producerID: 7, epoch: 1, sequence: 4), nowMs: 10_000) }
        _ = try log.append(try batch(["bumped"], producerID: 7, epoch: 1, sequence: 0), nowMs: 10_000)
        #expect(throws: LogError.invalidProducerEpoch(producerID: 7, epoch: 0, current: 1)) {
            try log.append(try batch(["stale"], producerID: 7, epoch: 0, sequence: 3), nowMs: 10_000)
        }
        // Producer state survives a clean restart and a crash (rebuilt from the log).
        log.close()
        log = try open(dir)
        #expect(try log.append(try batch(["bumped"], producerID: 7, epoch: 1, sequence: 0), nowMs: 10_000).isDuplicate)
        try FileManager.default.removeItem(atPath: dir.path + "/t-0/producer-state.snapshot")
        log = try open(dir)  // no close(): treated as a crash
        #expect(try log.append(try batch(["bumped"], producerID: 7, epoch: 1, sequence: 0), nowMs: 10_000).isDuplicate)
        #expect(second.baseOffset == 3)
    }

    @Test func rejectsBadBatches() throws {
        let dir = TempDir()
        let log = try open(dir, ["max.message.bytes": "200"])
        var corrupt = try batch(["fine"])
        corrupt.setInteger(UInt8(0x55), at: corrupt.readerIndex + 65)
        #expect(throws: LogError.self) { try log.append(corrupt, nowMs: 0) }
        #expect(throws: LogError.batchTooLarge(size: try batch([String(repeating: "q", count: 300)]).readableBytes, limit: 200)) {
            try log.append(try batch([String(repeating: "q", count: 300)]), nowMs: 0)
        }
        var truncated = try batch(["abc"])
        truncated.moveWriterIndex(to: truncated.writerIndex - 3)
        #expect(throws: LogError.self) { try log.append(truncated, nowMs: 0) }
        #expect(log.offsets.logEndOffset == 0)
    }

    @Test func logAppendTimeTopicsStampTheBrokerClock() throws {
        let dir = TempDir()
        let log = try open(dir, ["message.timestamp.type": "LogAppendTime"])
        let r = try log.append(try batch(["t1", "t2"], timestamp: 5), nowMs: 123_456)
        #expect(r.logAppendTime == 123_456)
        #expect(try readAll(log).allSatisfy { $0.timestamp == 123_456 })
    }

    @Test func deleteRecordsMovesStartAndPersists() throws {
        let dir = TempDir()
        var log = try open(dir, ["segment.bytes": "1024"])
        for i in 0..<50 { _ = try log.append(try batch(["d\(i)" + String(repeating: "d", count: 40)]), nowMs: 10_000) }
        #expect(try log.deleteRecords(before: 33) == 33)
        log.close()
        log = try open(dir, ["segment.bytes": "1024"])
        #expect(log.offsets.logStartOffset == 33)
        #expect(try readAll(log).first?.offset == 33)
        log.close()
    }

    @Test func rollsBySegmentMsMeasuredFromTheFirstBatch() throws {
        let dir = TempDir()
        let log = try open(dir, ["segment.ms": "1000"])
        _ = try log.append(try batch(["a"], timestamp: 10_000), nowMs: 10_000)
        _ = try log.append(try batch(["b"], timestamp: 10_500), nowMs: 10_500)
        #expect(log.segmentCount == 1)
        _ = try log.append(try batch(["c"], timestamp: 11_200), nowMs: 11_200)
        #expect(log.segmentBaseOffsets == [0, 2], "a batch more than segment.ms after the first starts a new segment")
        log.close()
    }

    @Test func flushPolicyByMessagesAndTime() throws {
        let dir = TempDir()
        let log = try open(dir, ["flush.messages": "5", "flush.ms": "1000"])
        #expect(try log.append(try batch(["1", "2"]), nowMs: 10_000).flushDue == false)
        #expect(try log.append(try batch(["3", "4", "5"]), nowMs: 10_100).flushDue == true)
        #expect(log.timeFlushDue(nowMs: 10_500) == false)
        #expect(log.timeFlushDue(nowMs: 11_000) == true)
        #expect(log.durableOffset == 0)
        #expect(try log.flush() == 5)
        #expect(log.durableOffset == 5)
        #expect(log.timeFlushDue(nowMs: 20_000) == false, "nothing unflushed after a flush")
        #expect(try log.append(try batch(["6"]), nowMs: 20_000).flushDue == false, "the count restarts after a flush")
        log.close()
    }
}

final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var v = false
    func set() { lock.lock(); v = true; lock.unlock() }
    var value: Bool { lock.lock(); defer { lock.unlock() }; return v }
}

@Suite("Log compaction", .timeLimit(.minutes(2)))
struct CompactionTests {
    func open(_ dir: TempDir, _ overrides: [String: String]) throws -> PartitionLog {
        try PartitionLog.open(directory: dir.path + "/c-0", topic: "c", partition: 0,
                              config: LogConfig(overrides: overrides), nowMs: 10_000, logger: quiet)
    }

    func keyed(_ pairs: [(String, String?)], timestamp: Int64, codec: CompressionCodec = .none) throws -> ByteBuffer {
        var b = RecordBatchBuilder()
        for (i, (k, v)) in pairs.enumerated() {
            b.append(key: ByteBuffer(string: k), value: v.map { ByteBuffer(string: $0) }, timestamp: timestamp + Int64(i))
        }
        return try b.build(compression: codec)
    }

    @Test func keepsTheLatestValuePerKeyWithOffsetsUnchanged() throws {
        let dir = TempDir()
        let log = try open(dir, ["cleanup.policy": "compact", "segment.bytes": "1500", "min.cleanable.dirty.ratio": "0.01"])
        var expected: [String: (Int64, String)] = [:]
        var offset: Int64 = 0
        for round in 0..<30 {
            var pairs: [(String, String?)] = []
            for k in 0..<5 { pairs.append(("key-\(k)", "r\(round)-k\(k)")) }
            let r = try log.append(try keyed(pairs, timestamp: 1_000 + Int64(round), codec: round % 3 == 0 ? .gzip : .none), nowMs: 10_000)
            for (i, p) in pairs.enumerated() { expected[p.0] = (r.baseOffset + Int64(i), p.1!) }
            offset = r.lastOffset + 1
        }
        // One more batch so the last updates sit in a closed segment.
        try log.roll(nowMs: 10_000)
        _ = try log.append(try keyed([("other", "x")], timestamp: 2_000), nowMs: 10_000)
        let before = try readAll(log)
        #expect(before.count == 151)
        let result = try #require(try log.compact(nowMs: 20_000))
        #expect(result.recordsRemoved == 145)
        let after = try readAll(log)
        #expect(after.count == 6)
        for (k, (o, v)) in expected {
            let survivors = after.filter { $0.key == ByteBuffer(string: k) }
            #expect(survivors.count == 1, "one record for \(k)")
            #expect(survivors.first?.offset == o, "the survivor keeps its offset")
            #expect(survivors.first.map { String(buffer: $0.value!) } == v)
        }
        #expect(log.offsets.logEndOffset == offset + 1, "the log end does not move")
        // Reading from an offset inside a removed range lands on the next survivor.
        let fromGap = try readAll(log, from: 3)
        #expect(fromGap.first.map { $0.offset >= 3 } == true)
        #expect(try log.append(try keyed([("key-0", "new")], timestamp: 3_000), nowMs: 10_000).baseOffset == offset + 1)
        log.close()
        // Still consistent after a restart.
        let reopened = try open(dir, ["cleanup.policy": "compact", "segment.bytes": "1500"])
        #expect(try readAll(reopened).count == 7)
        reopened.close()
    }

    @Test func tombstonesGoAfterDeleteRetention() throws {
        let dir = TempDir()
        let log = try open(dir, ["cleanup.policy": "compact", "delete.retention.ms": "1000", "min.cleanable.dirty.ratio": "0"])
        _ = try log.append(try keyed([("a", "1"), ("b", "1")], timestamp: 5_000), nowMs: 10_000)
        _ = try log.append(try keyed([("a", nil)], timestamp: 5_100), nowMs: 10_000)
        try log.roll(nowMs: 10_000)
        _ = try log.append(try keyed([("z", "active")], timestamp: 5_200), nowMs: 10_000)
        // Before the retention passes the tombstone stays (consumers must see the delete).
        _ = try log.compact(nowMs: 5_500, force: true)
        var view = try readAll(log)
        #expect(view.map { $0.key.map { String(buffer: $0) } ?? "" } == ["b", "a", "z"])
        #expect(view[1].value == nil)
        _ = try log.compact(nowMs: 7_000, force: true)
        view = try readAll(log)
        #expect(view.map { $0.key.map { String(buffer: $0) } ?? "" } == ["b", "z"])
        log.close()
    }

    @Test func dirtyRatioGatesCleaningAndKeylessRecordsAreRefused() throws {
        let dir = TempDir()
        let log = try open(dir, ["cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.5"])
        #expect(throws: LogError.self) { try log.append(try batch(["no key"]), nowMs: 10_000) }
        _ = try log.append(try keyed([("k", "1"), ("k", "2")], timestamp: 1_000), nowMs: 10_000)
        try log.roll(nowMs: 10_000)
        _ = try log.append(try keyed([("k", "3")], timestamp: 1_000), nowMs: 10_000)
        #expect(log.dirtyRatio(nowMs: 10_000) == 1.0)
        #expect(try log.compact(nowMs: 10_000) != nil)
        #expect(log.dirtyRatio(nowMs: 10_000) == 0)
        #expect(try log.compact(nowMs: 10_000) == nil, "nothing dirty: no pass")
        log.close()
    }

    @Test func minCompactionLagProtectsRecentSegments() throws {
        let dir = TempDir()
        let log = try open(dir, ["cleanup.policy": "compact", "min.compaction.lag.ms": "60000", "min.cleanable.dirty.ratio": "0"])
        _ = try log.append(try keyed([("k", "1"), ("k", "2")], timestamp: 10_000), nowMs: 10_000)
        try log.roll(nowMs: 10_000)
        _ = try log.append(try keyed([("k", "3")], timestamp: 10_000), nowMs: 10_000)
        #expect(try log.compact(nowMs: 20_000) == nil)
        #expect(try log.compact(nowMs: 80_000)?.recordsRemoved == 1)
        log.close()
    }
}
