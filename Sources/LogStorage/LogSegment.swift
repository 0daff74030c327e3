import Foundation
import FileLayer
import KafkaProtocol
import NIOCore

/// One segment of a partition log: `<base>.log` with its `.index` and `.timeindex`.
///
/// Not thread-safe on its own: ``PartitionLog`` owns its segments and calls them under its lock.
/// Readers hold the log file itself, so they can keep reading a segment that retention drops.
final class LogSegment {
    let fs: any FileSystem
    let baseOffset: Int64
    private(set) var directory: String
    let log: any StorageFile
    private(set) var index: OffsetIndex
    private(set) var timeIndex: TimeIndex
    /// Bytes of valid batches in the log file.
    private(set) var size: Int64 = 0
    /// Offset after the last batch; equals `baseOffset` when empty.
    private(set) var nextOffset: Int64
    private(set) var maxTimestamp: Int64 = -1
    private(set) var offsetOfMaxTimestamp: Int64 = -1
    /// Max timestamp of the first batch, which `segment.ms` measures age from (as Kafka does).
    private(set) var firstBatchTimestamp: Int64? = nil
    /// Wall-clock creation time, used for `segment.ms` when batches carry no timestamp.
    let createdAtMs: Int64
    private var bytesSinceIndexEntry: Int64 = 0

    static func fileName(_ base: Int64, _ suffix: String) -> String {
        let digits = String(base)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + suffix
    }

    var logPath: String { "\(directory)/\(Self.fileName(baseOffset, ".log"))" }
    var indexPath: String { "\(directory)/\(Self.fileName(baseOffset, ".index"))" }
    var timeIndexPath: String { "\(directory)/\(Self.fileName(baseOffset, ".timeindex"))" }

    var isEmpty: Bool { size == 0 }

    private init(fs: any FileSystem, directory: String, baseOffset: Int64, nowMs: Int64) throws {
        self.fs = fs
        self.directory = directory
        self.baseOffset = baseOffset
        self.nextOffset = baseOffset
        self.createdAtMs = nowMs
        log = try fs.openFile("\(directory)/\(Self.fileName(baseOffset, ".log"))", create: true)
        index = OffsetIndex(file: try fs.openFile("\(directory)/\(Self.fileName(baseOffset, ".index"))", create: true))
        timeIndex = TimeIndex(file: try fs.openFile("\(directory)/\(Self.fileName(baseOffset, ".timeindex"))", create: true))
    }

    /// A new, empty segment. Its directory entries are durable only after the caller syncs the
    /// directory (``PartitionLog`` does so before any offset of the segment counts as durable).
    static func create(fs: any FileSystem, directory: String, baseOffset: Int64, nowMs: Int64) throws -> LogSegment {
        let s = try LogSegment(fs: fs, directory: directory, baseOffset: baseOffset, nowMs: nowMs)
        try s.log.truncate(to: 0)
        try s.index.reset()
        try s.timeIndex.reset()
        return s
    }

    /// Opens an existing segment.
    ///
    /// With `recover`, every batch is validated (length, magic, CRC, increasing offsets) and the file is
    /// cut at the first bad one, and both indexes are rebuilt. Without it the indexes are trusted if
    /// they look sane (else rebuilt) and only the tail after the last index entry is scanned to find
    /// the end offset. Returns the segment and the number of bytes cut off.
    static func open(fs: any FileSystem, directory: String, baseOffset: Int64, recover: Bool, config: LogConfig,
                     nowMs: Int64) throws -> (LogSegment, Int64) {
        let s = try LogSegment(fs: fs, directory: directory, baseOffset: baseOffset, nowMs: nowMs)
        let fileSize = try s.log.size()
        var needsRebuild = recover
        if !needsRebuild {
            let okIndex = try s.index.load(logSize: fileSize)
            let okTime = try s.timeIndex.load(maxRelativeOffset: nil)
            needsRebuild = !(okIndex && okTime)
        }
        if needsRebuild {
            try s.index.reset()
            try s.timeIndex.reset()
            let truncated = try s.scan(from: 0, fileSize: fileSize, validate: true, indexing: true, config: config)
            return (s, truncated)
        }
        // Trusted index: scan headers from the last indexed position to learn the end offset.
        let start = Int64(s.index.entries.last?.position ?? 0)
        s.size = start
        if let lastTime = s.timeIndex.entries.last {
            s.maxTimestamp = lastTime.timestamp
            s.offsetOfMaxTimestamp = baseOffset + Int64(lastTime.relativeOffset)
        }
        let truncated = try s.scan(from: start, fileSize: fileSize, validate: false, indexing: false, config: config)
        try s.loadFirstBatchTimestamp()
        return (s, truncated)
    }

    private func loadFirstBatchTimestamp() throws {
        guard size >= Int64(RecordBatchHeader.size) else { return }
        let b = try log.read(at: 0, length: RecordBatchHeader.size)
        if let h = try? RecordBatchHeader(b, at: b.readerIndex) { firstBatchTimestamp = h.maxTimestamp }
    }

    /// Walks batches from `position`, stopping at the first torn or invalid one and truncating there.
    private func scan(from position: Int64, fileSize: Int64, validate: Bool, indexing: Bool, config: LogConfig) throws -> Int64 {
        var pos = position
        var expectedNext: Int64? = nil
        let chunkSize = 4 << 20
        var chunk = ByteBuffer()
        var chunkStart: Int64 = 0
        scanning: while pos + Int64(RecordBatchHeader.size) <= fileSize {
            // Make sure the header, then the whole batch, are in the chunk.
            if pos < chunkStart || pos + Int64(RecordBatchHeader.size) > chunkStart + Int64(chunk.readableBytes) {
                chunk.clear()
                chunkStart = pos
                _ = try log.read(at: pos, length: Int(min(Int64(chunkSize), fileSize - pos)), into: &chunk)
            }
            var at = chunk.readerIndex + Int(pos - chunkStart)
            guard let header = try? RecordBatchHeader(chunk, at: at) else { break }
            let total = Int64(header.totalSize)
            guard header.batchLength >= Int32(RecordBatchHeader.size - RecordBatchHeader.logOverhead),
                  header.magic == 2, pos + total <= fileSize,
                  header.lastOffsetDelta >= 0, header.baseOffset >= baseOffset,
                  expectedNext.map({ header.baseOffset >= $0 }) ?? true
            else { break }
            if validate {
                if pos + total > chunkStart + Int64(chunk.readableBytes) {
                    chunk.clear()
                    chunkStart = pos
                    _ = try log.read(at: pos, length: Int(max(total, min(Int64(chunkSize), fileSize - pos))), into: &chunk)
                    at = chunk.readerIndex
                }
                do {
                    _ = try RecordBatch.validate(chunk, at: at)
                } catch {
                    break scanning
                }
            }
            if indexing {
                maybeIndex(header: header, position: pos, config: config)
            } else {
                trackTimestamp(header)
            }
            if firstBatchTimestamp == nil && pos == 0 { firstBatchTimestamp = header.maxTimestamp }
            pos += total
            size = pos
            nextOffset = header.nextOffset
            expectedNext = header.nextOffset
        }
        size = pos
        if nextOffset < baseOffset { nextOffset = baseOffset }
        let cut = fileSize - pos
        if cut > 0 { try log.truncate(to: pos) }
        if indexing == false && cut > 0 {
            try index.truncate(atOrAfterPosition: UInt32(truncatingIfNeeded: pos))
        }
        return cut
    }

    private func trackTimestamp(_ header: RecordBatchHeader) {
        if header.maxTimestamp > maxTimestamp {
            maxTimestamp = header.maxTimestamp
            offsetOfMaxTimestamp = header.lastOffset
        }
    }

    private func maybeIndex(header: RecordBatchHeader, position: Int64, config: LogConfig) {
        trackTimestamp(header)
        if bytesSinceIndexEntry >= config.indexIntervalBytes || index.entries.isEmpty {
            // Index writes failing is not fatal: lookups just scan further.
            try? index.append(relativeOffset: UInt32(header.baseOffset - baseOffset), position: UInt32(position))
            if maxTimestamp >= 0 {
                try? timeIndex.append(timestamp: maxTimestamp, relativeOffset: UInt32(offsetOfMaxTimestamp - baseOffset))
            }
            bytesSinceIndexEntry = 0
        }
        bytesSinceIndexEntry += Int64(header.totalSize)
    }

    /// Appends already-validated batches (offsets assigned) described by `headers`, whose bytes are
    /// gathered by `vecs`. `headers[i]` starts at `size + starts[i]`.
    func append(vecs: inout [iovec], headers: [RecordBatchHeader], starts: [Int64], totalBytes: Int64, config: LogConfig) throws {
        try log.writev(&vecs, at: size)
        for (i, h) in headers.enumerated() {
            if firstBatchTimestamp == nil { firstBatchTimestamp = h.maxTimestamp }
            maybeIndex(header: h, position: size + starts[i], config: config)
        }
        size += totalBytes
        nextOffset = headers.last!.nextOffset
    }

    /// Byte position of the batch containing `offset`, or of the first batch after it.
    /// Returns nil when `offset` is at or beyond the end of this segment.
    func position(of offset: Int64) throws -> Int64? {
        guard offset < nextOffset else { return nil }
        let rel = UInt32(clamping: max(0, offset - baseOffset))
        var pos = Int64(index.floor(rel)?.position ?? 0)
        var hdr = ByteBuffer()
        while pos < size {
            hdr.clear()
            guard try log.read(at: pos, length: 27, into: &hdr) == 27 else { return nil }
            let base: Int64 = hdr.getInteger(at: hdr.readerIndex, endianness: .big)!
            let length: Int32 = hdr.getInteger(at: hdr.readerIndex + 8, endianness: .big)!
            let delta: Int32 = hdr.getInteger(at: hdr.readerIndex + 23, endianness: .big)!
            if base + Int64(delta) >= offset { return pos }
            pos += Int64(RecordBatchHeader.logOverhead) + Int64(length)
        }
        return nil
    }

    /// Size of the batch at `position`.
    func batchSize(at position: Int64) throws -> Int64 {
        var b = ByteBuffer()
        guard try log.read(at: position, length: 12, into: &b) == 12 else { return 0 }
        return Int64(RecordBatchHeader.logOverhead) + Int64(b.getInteger(at: b.readerIndex + 8, endianness: .big, as: Int32.self)!)
    }

    /// Headers and positions of batches from `position` to the end of the segment.
    func headers(from position: Int64, limit: Int = .max) throws -> [(RecordBatchHeader, Int64)] {
        var out: [(RecordBatchHeader, Int64)] = []
        var pos = position
        var b = ByteBuffer()
        while pos < size && out.count < limit {
            b.clear()
            guard try log.read(at: pos, length: RecordBatchHeader.size, into: &b) == RecordBatchHeader.size else { break }
            let h = try RecordBatchHeader(b, at: b.readerIndex)
            out.append((h, pos))
            pos += Int64(h.totalSize)
        }
        return out
    }

    /// First offset whose record timestamp is >= `timestamp`, with that timestamp.
    func offset(forTimestamp timestamp: Int64, from startOffset: Int64) throws -> (offset: Int64, timestamp: Int64)? {
        guard maxTimestamp >= timestamp else { return nil }
        let startRel = timeIndex.lastBefore(timestamp).map { baseOffset + Int64($0.relativeOffset) } ?? baseOffset
        guard var pos = try position(of: max(startRel, startOffset)) else { return nil }
        while pos < size {
            let total = try batchSize(at: pos)
            let batch = try log.read(at: pos, length: Int(total))
            let h = try RecordBatchHeader(batch, at: batch.readerIndex)
            if h.maxTimestamp >= timestamp {
                if h.isLogAppendTime { return (max(h.baseOffset, startOffset), h.maxTimestamp) }
                if let records = try? RecordBatch.records(in: batch, at: batch.readerIndex),
                   let r = records.first(where: { $0.timestamp >= timestamp && $0.offset >= startOffset })
                {
                    return (r.offset, r.timestamp)
                }
                // A codec we cannot read: the batch is the best answer.
                return (max(h.baseOffset, startOffset), h.maxTimestamp)
            }
            pos += total
        }
        return nil
    }

    /// Cuts the segment so that it ends before `offset` (used for replica truncation).
    func truncate(to offset: Int64) throws {
        guard offset < nextOffset else { return }
        guard let pos = try position(of: offset) else { return }
        try log.truncate(to: pos)
        size = pos
        try index.truncate(atOrAfterPosition: UInt32(pos))
        try timeIndex.truncate(atOrAfterRelativeOffset: UInt32(max(0, offset - baseOffset)))
        nextOffset = offset
        maxTimestamp = timeIndex.entries.last?.timestamp ?? -1
        offsetOfMaxTimestamp = timeIndex.entries.last.map { baseOffset + Int64($0.relativeOffset) } ?? -1
        for (h, _) in try headers(from: Int64(index.entries.last?.position ?? 0)) { trackTimestamp(h) }
        if pos == 0 { firstBatchTimestamp = nil }
    }

    /// Flushes the log and indexes to stable storage.
    func syncAll() throws {
        try log.sync()
        try index.file.sync()
        try timeIndex.file.sync()
    }

    /// Moves this segment's files from a staging directory into `target`, replacing the files of
    /// the segment with the same base offset there. Old index files go first so that a crash at
    /// any point leaves either a log without index (rebuilt on open) or a complete new segment.
    func moveFiles(into target: String) throws {
        let names = [Self.fileName(baseOffset, ".index"), Self.fileName(baseOffset, ".timeindex")]
        for n in names { try fs.removeFile("\(target)/\(n)") }
        try fs.rename(logPath, "\(target)/\(Self.fileName(baseOffset, ".log"))")
        for n in names { try? fs.rename("\(directory)/\(n)", "\(target)/\(n)") }
        directory = target
    }

    /// Writes `data` as a new segment in `directory` (a staging directory) and indexes it; the
    /// result is durable (files synced) but its directory entries are not.
    static func build(fs: any FileSystem, directory: String, baseOffset: Int64, data: ByteBuffer, config: LogConfig,
                      nowMs: Int64) throws -> LogSegment {
        try fs.createDirectory(directory)
        let f = try fs.openFile("\(directory)/\(fileName(baseOffset, ".log"))", create: true)
        try f.truncate(to: 0)
        try data.withUnsafeReadableBytes { try f.write($0, at: 0) }
        try f.sync()
        let (seg, _) = try open(fs: fs, directory: directory, baseOffset: baseOffset, recover: true, config: config, nowMs: nowMs)
        try seg.syncAll()
        return seg
    }

    func deleteFiles() {
        for p in [logPath, indexPath, timeIndexPath] { try? fs.removeFile(p) }
    }
}
