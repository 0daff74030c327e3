import FileLayer
import Foundation
import KafkaProtocol
import Logging
import NIOCore
import Testing
import TestSupport
@testable import LogStorage

/// Data already on disk is trusted only as far as its CRC: extreme values in stored batches (from
/// an older build, another tool, or a client before validation existed) never trap housekeeping.
@Suite("Stored data edges", .timeLimit(.minutes(2)))
struct StoredDataEdgeTests {
    /// A batch with the given header timestamps, written straight into the active segment file as
    /// if it had been stored long ago, with a valid CRC.
    func storeRaw(_ dir: String, baseOffset: Int64, key: String, baseTimestamp: Int64, maxTimestamp: Int64) throws {
        var b = RecordBatchBuilder()
        b.append(key: ByteBuffer(string: key), value: ByteBuffer(string: "v"), timestamp: baseTimestamp)
        var bytes = try b.build()
        bytes.setInteger(baseOffset, at: bytes.readerIndex, endianness: .big)
        bytes.setInteger(maxTimestamp, at: bytes.readerIndex + RecordBatchHeader.maxTimestampOffset, endianness: .big)
        let crc = CRC32C.checksum(bytes, at: bytes.readerIndex + 21, length: bytes.readableBytes - 21)
        bytes.setInteger(crc, at: bytes.readerIndex + 17, endianness: .big)
        let f = try PosixFile(path: "\(dir)/00000000000000000000.log", create: true)
        let end = try f.size()
        try bytes.withUnsafeReadableBytes { try f.write($0, at: end) }
    }

    @Test func extremeStoredTimestampsNeverTrapRetentionOrCompaction() throws {
        let dir = TempDir()
        let path = dir.path + "/x-0"
        let config = LogConfig(overrides: ["cleanup.policy": "compact,delete", "retention.ms": "1000", "segment.bytes": "1024",
                                           "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "10"])
        var log = try PartitionLog.open(directory: path, topic: "x", partition: 0, config: config, nowMs: 10_000, logger: quiet)
        log.close()
        try FileManager.default.removeItem(atPath: path + "/.clean-shutdown")
        let extremes: [(Int64, Int64)] = [(Int64.min, Int64.min), (Int64.max, Int64.max), (Int64.min, Int64.max), (-1, Int64.min + 1)]
        for (i, (base, max)) in extremes.enumerated() {
            try storeRaw(path, baseOffset: Int64(i), key: "k\(i % 2)", baseTimestamp: base, maxTimestamp: max)
        }
        log = try PartitionLog.open(directory: path, topic: "x", partition: 0, config: config, nowMs: 10_000, logger: quiet)
        #expect(log.offsets.logEndOffset == 4, "the stored batches are valid and kept")
        for i in 0..<40 {
            _ = try log.append(try batch(["pad-\(i)"], keys: ["k\(i % 3)"], timestamp: 9_000), nowMs: 10_000)
        }
        for now in [Int64.min, -1, 0, 10_000, Int64.max] {
            _ = try log.enforceRetention(nowMs: now)
            _ = try log.compact(nowMs: now, force: true)
            _ = log.timeFlushDue(nowMs: now)
            _ = try log.rollIfNearlyDue(nowMs: now)
            _ = log.expireProducers(nowMs: now, maxAgeMs: 1000)
        }
        log.close()
    }

    @Test func flushingALogThatWasClosedUnflushedFailsInsteadOfSpinning() throws {
        let fs = CrashSimulatingFileSystem(seed: 9)
        let log = try PartitionLog.open(fs: fs, directory: "/d/t-0", topic: "t", partition: 0, config: LogConfig(),
                                        nowMs: 1, logger: quiet)
        _ = try log.append(try batch(["a"]), nowMs: 1)
        try log.detach(renamingTo: "/d/t-0.gone")
        #expect(throws: LogError.closed) { try log.flush() }
    }
}
