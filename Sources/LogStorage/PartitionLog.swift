import Foundation
import KafkaProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The log of one topic partition: an ordered list of segments in `<dataDir>/<topic>-<partition>/`.
///
/// Invariants: offsets are assigned contiguously and never change; `logStartOffset <= highWatermark
/// <= logEndOffset`; only the last (active) segment is written. Every mutable field is guarded by
/// `lock`, which is held for bookkeeping and the `pwritev` of an append but never for an fsync or
/// while a fetch response is written to a socket: readers take a reference to the segment file and
/// read outside the lock.
public final class PartitionLog: @unchecked Sendable {
    public let topic: TopicName
    public let partition: Int32
    public let directory: String
    let logger: Logger
    let lock = NIOLock()

    var segments: [LogSegment]
    var _config: LogConfig
    private var _logStartOffset: Int64
    private var _highWatermark: Int64
    private var producers: ProducerStateTable
    private var flushedOffset: Int64
    private var unflushedMessages: Int64 = 0
    private var oldestUnflushedMs: Int64? = nil
    private var waiters: [UInt64: @Sendable () -> Void] = [:]
    private var nextWaiterID: UInt64 = 0
    var closed = false
    /// Leader epoch stamped into appended batches; -1 while the cluster runs without epochs.
    private var _leaderEpoch: Int32 = -1
    /// When true the high watermark follows the log end offset on every append (single replica).
    private var _highWatermarkFollowsEnd = true

    static let cleanShutdownFile = ".clean-shutdown"
    static let logStartFile = "log-start-offset"
    static let producerSnapshotFile = "producer-state.snapshot"

    /// The directory name Kafka uses for a partition.
    public static func directoryName(topic: TopicName, partition: Int32) -> String {
        "\(topic.rawValue)-\(partition)"
    }

    /// Parses `<topic>-<partition>` back into its parts.
    public static func parseDirectoryName(_ name: String) -> (TopicName, Int32)? {
        guard let dash = name.lastIndex(of: "-"), let p = Int32(name[name.index(after: dash)...]), p >= 0 else { return nil }
        let t = TopicName(String(name[..<dash]))
        return t.validationError == nil ? (t, p) : nil
    }

    // MARK: - Opening and closing

    /// Opens (creating if needed) the log in `directory`.
    ///
    /// After an unclean shutdown (no marker file) the active segment is fully validated and cut at
    /// the first torn or corrupt batch; any segment whose index files are missing or damaged has
    /// them rebuilt. Idempotent-producer state is reloaded from its snapshot plus the batches after it.
    public static func open(directory: String, topic: TopicName, partition: Int32, config: LogConfig,
                            nowMs: Int64, logger: Logger) throws -> PartitionLog {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // A compaction that did not finish left only staged files behind; the originals are intact.
        try? fm.removeItem(atPath: "\(directory)/.cleaning")
        let marker = "\(directory)/\(cleanShutdownFile)"
        let clean = fm.fileExists(atPath: marker)
        if clean { try? fm.removeItem(atPath: marker) }

        var bases: [Int64] = []
        for name in try fm.contentsOfDirectory(atPath: directory) {
            if name.hasSuffix(".log"), let b = Int64(name.dropLast(4)) {
                bases.append(b)
            }
        }
        bases.sort()
        // Index files without a log are leftovers of a deleted segment.
        for name in try fm.contentsOfDirectory(atPath: directory) where name.hasSuffix(".index") || name.hasSuffix(".timeindex") {
            let stem = name.split(separator: ".").first.map(String.init) ?? ""
            if let b = Int64(stem), !bases.contains(b) { try? fm.removeItem(atPath: "\(directory)/\(name)") }
        }

        var checkpointStart: Int64 = 0
        if let text = try? String(contentsOfFile: "\(directory)/\(logStartFile)", encoding: .utf8),
           let v = Int64(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            checkpointStart = v
        }

        var segments: [LogSegment] = []
        for (i, base) in bases.enumerated() {
            let isLast = i == bases.count - 1
            let (seg, cut) = try LogSegment.open(directory: directory, baseOffset: base, recover: isLast && !clean,
                                                 config: config, nowMs: nowMs)
            if cut > 0 {
                logger.warning("recovered partition log: cut a torn or corrupt tail",
                               metadata: ["topic": "\(topic)", "partition": "\(partition)",
                                          "segment": "\(base)", "bytes_removed": "\(cut)", "end_offset": "\(seg.nextOffset)"])
            }
            segments.append(seg)
        }
        // Drop empty trailing segments left behind by a roll that crashed, except the first one.
        while segments.count > 1, let last = segments.last, last.isEmpty, last.baseOffset != segments[segments.count - 2].nextOffset {
            last.deleteFiles()
            segments.removeLast()
        }
        if segments.isEmpty {
            segments.append(try LogSegment.create(directory: directory, baseOffset: checkpointStart, nowMs: nowMs))
        }
        let log = PartitionLog(topic: topic, partition: partition, directory: directory, config: config,
                               segments: segments, logStartOffset: max(checkpointStart, segments[0].baseOffset),
                               logger: logger)
        try log.loadProducerState()
        if !clean && !bases.isEmpty {
            logger.info("opened partition log after an unclean shutdown",
                        metadata: ["topic": "\(topic)", "partition": "\(partition)",
                                   "log_start_offset": "\(log._logStartOffset)", "log_end_offset": "\(log.logEndOffsetLocked)"])
        }
        return log
    }

    private init(topic: TopicName, partition: Int32, directory: String, config: LogConfig, segments: [LogSegment],
                 logStartOffset: Int64, logger: Logger) {
        self.topic = topic
        self.partition = partition
        self.directory = directory
        self._config = config
        self.segments = segments
        self._logStartOffset = min(logStartOffset, segments.last!.nextOffset)
        self._highWatermark = segments.last!.nextOffset
        self.flushedOffset = segments.last!.nextOffset
        self.producers = ProducerStateTable()
        var l = logger
        l[metadataKey: "topic"] = "\(topic)"
        l[metadataKey: "partition"] = "\(partition)"
        self.logger = l
    }

    private func loadProducerState() throws {
        let end = logEndOffsetLocked
        var replayFrom = segments.last!.baseOffset
        if let data = FileManager.default.contents(atPath: "\(directory)/\(Self.producerSnapshotFile)"),
           let (table, offset) = ProducerStateTable.load(ByteBuffer(bytes: data)) {
            producers = table
            if offset > end {
                producers.truncate(from: end)
                replayFrom = end
            } else {
                replayFrom = max(offset, segments.first!.baseOffset)
            }
        }
        for seg in segments where seg.nextOffset > replayFrom {
            guard let pos = try seg.position(of: replayFrom) else { continue }
            for (h, _) in try seg.headers(from: pos) where h.producerID >= 0 && h.lastOffset >= replayFrom {
                producers.record(h)
            }
        }
    }

    private func writeProducerSnapshot() {
        let snap = producers.snapshot(at: logEndOffsetLocked)
        let tmp = "\(directory)/\(Self.producerSnapshotFile).tmp"
        let data = Data(snap.readableBytesView)
        if FileManager.default.createFile(atPath: tmp, contents: data) {
            rename(tmp, "\(directory)/\(Self.producerSnapshotFile)")
        }
    }

    /// Flushes everything, saves producer state and marks the log cleanly shut down.
    public func close() {
        let pending: [@Sendable () -> Void] = lock.withLock {
            guard !closed else { return [] }
            closed = true
            for s in segments { try? s.syncAll() }
            writeProducerSnapshot()
            _ = FileManager.default.createFile(atPath: "\(directory)/\(Self.cleanShutdownFile)", contents: Data())
            syncDirectory(directory)
            let w = Array(waiters.values)
            waiters.removeAll()
            return w
        }
        for w in pending { w() }
    }

    /// Closes the log and removes its directory (topic deletion).
    public func delete() {
        let pending: [@Sendable () -> Void] = lock.withLock {
            closed = true
            let w = Array(waiters.values)
            waiters.removeAll()
            for s in segments { s.deleteFiles() }
            segments.removeAll()
            try? FileManager.default.removeItem(atPath: directory)
            return w
        }
        for w in pending { w() }
    }

    // MARK: - State

    public var config: LogConfig {
        get { lock.withLock { _config } }
        set { lock.withLock { _config = newValue } }
    }

    private var logEndOffsetLocked: Int64 { segments.last?.nextOffset ?? _logStartOffset }

    public struct Offsets: Sendable, Equatable {
        public var logStartOffset: Int64
        public var highWatermark: Int64
        public var logEndOffset: Int64
    }

    public var offsets: Offsets {
        lock.withLock { Offsets(logStartOffset: _logStartOffset, highWatermark: _highWatermark, logEndOffset: logEndOffsetLocked) }
    }

    public var leaderEpoch: Int32 {
        get { lock.withLock { _leaderEpoch } }
        set { lock.withLock { _leaderEpoch = newValue } }
    }

    /// Total bytes of all segments.
    public var sizeInBytes: Int64 {
        lock.withLock { segments.reduce(0) { $0 + $1.size } }
    }

    public var segmentCount: Int { lock.withLock { segments.count } }

    public var segmentBaseOffsets: [Int64] { lock.withLock { segments.map(\.baseOffset) } }

    // MARK: - Append

    public struct AppendResult: Sendable, Equatable {
        public var baseOffset: Int64
        public var lastOffset: Int64
        /// The broker time stamped into the batch, or -1 for CreateTime topics.
        public var logAppendTime: Int64
        public var logStartOffset: Int64
        public var recordCount: Int
        /// The batch was a retry of one already in the log; nothing was written.
        public var isDuplicate: Bool
        /// The flush policy (`flush.messages`) asks for an fsync now.
        public var flushDue: Bool
    }

    /// Validates and appends the record batches in `records` (a Produce partition's payload).
    ///
    /// CRC and structure checks run before the lock is taken. Batches are written with one `pwritev`
    /// straight from `records`' storage; only the 16 header bytes that change (base offset, leader
    /// epoch) come from a scratch area, so the payload is never copied.
    public func append(_ records: ByteBuffer, nowMs: Int64) throws -> AppendResult {
        var headers: [RecordBatchHeader] = []
        var starts: [Int] = []
        var i = records.readerIndex
        let config = lock.withLock { _config }
        let rules = config.validationRules(nowMs: nowMs)
        while i < records.writerIndex {
            var h: RecordBatchHeader
            do {
                h = try RecordBatch.validate(records, at: i)
                if Int64(h.totalSize) > config.maxMessageBytes {
                    throw LogError.batchTooLarge(size: h.totalSize, limit: config.maxMessageBytes)
                }
                try RecordBatch.validateForProduce(h)
                try RecordBatch.validateRecords(records, at: i, header: h, rules: rules)
            } catch let e as KafkaProtocolError {
                switch e {
                case .corruptRecordBatch: throw LogError.corruptBatch(e.description)
                case .invalidTimestamp: throw LogError.invalidTimestamp(e.description)
                default: throw LogError.invalidBatch(e.description)
                }
            }
            // The producer's base offset is not covered by the CRC and means nothing until the log
            // assigns one: nothing may compute with it before then.
            h.baseOffset = 0
            headers.append(h)
            starts.append(i)
            i += h.totalSize
        }
        guard !headers.isEmpty else { throw LogError.invalidBatch("no record batch in the request") }
        return try appendValidated(records, headers: headers, starts: starts, nowMs: nowMs)
    }

    private func appendValidated(_ records: ByteBuffer, headers inHeaders: [RecordBatchHeader], starts: [Int],
                                 nowMs: Int64) throws -> AppendResult {
        var headers = inHeaders
        var notify: [@Sendable () -> Void] = []
        let result: AppendResult = try lock.withLock {
            guard !closed else { throw LogError.closed }
            // Idempotence: a retried batch is answered from the producer table.
            var table = producers
            for h in headers where h.producerID >= 0 {
                if case .duplicate(let meta) = try table.check(h) {
                    guard headers.count == 1 else {
                        throw LogError.invalidBatch("duplicate batch inside a multi-batch append")
                    }
                    return AppendResult(baseOffset: meta.firstOffset, lastOffset: meta.lastOffset, logAppendTime: -1,
                                        logStartOffset: _logStartOffset, recordCount: 0, isDuplicate: true, flushDue: false)
                }
                table.record(h)
            }
            let totalBytes = headers.reduce(Int64(0)) { $0 + Int64($1.totalSize) }
            try maybeRoll(incomingBytes: totalBytes, nowMs: nowMs, lastOffsetDelta: headers.reduce(0) { $0 + Int64($1.lastOffsetDelta) + 1 })
            let base = logEndOffsetLocked
            var next = base
            let appendTime: Int64 = _config.logAppendTime ? nowMs : -1
            var relStarts: [Int64] = []
            var rel: Int64 = 0
            for k in headers.indices {
                headers[k].baseOffset = next
                headers[k].partitionLeaderEpoch = _leaderEpoch
                if appendTime >= 0 { headers[k].maxTimestamp = appendTime; headers[k].attributes |= 0x8 }
                next = headers[k].nextOffset
                relStarts.append(rel)
                rel += Int64(headers[k].totalSize)
            }
            let active = segments.last!
            if appendTime >= 0 {
                // LogAppendTime changes CRC-covered bytes: copy, restamp, write the copy.
                var copy = ByteBuffer()
                for (k, h) in headers.enumerated() {
                    var one = records.getSlice(at: starts[k], length: h.totalSize)!
                    RecordBatch.setBaseOffset(h.baseOffset, in: &one, at: one.readerIndex)
                    RecordBatch.setPartitionLeaderEpoch(h.partitionLeaderEpoch, in: &one, at: one.readerIndex)
                    try? RecordBatch.setLogAppendTime(appendTime, in: &one, at: one.readerIndex)
                    copy.writeBuffer(&one)
                }
                try copy.withUnsafeReadableBytes { raw in
                    var vecs = [iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress!), iov_len: raw.count)]
                    try active.append(vecs: &vecs, headers: headers, starts: relStarts, totalBytes: totalBytes, config: _config)
                }
            } else {
                try withUnsafeTemporaryAllocation(byteCount: 16 * headers.count, alignment: 8) { patch in
                    try records.withUnsafeReadableBytes { raw in
                        var vecs: [iovec] = []
                        vecs.reserveCapacity(headers.count * 2)
                        for (k, h) in headers.enumerated() {
                            let p = patch.baseAddress! + 16 * k
                            p.storeBytes(of: h.baseOffset.bigEndian, toByteOffset: 0, as: Int64.self)
                            p.storeBytes(of: h.batchLength.bigEndian, toByteOffset: 8, as: Int32.self)
                            p.storeBytes(of: h.partitionLeaderEpoch.bigEndian, toByteOffset: 12, as: Int32.self)
                            vecs.append(iovec(iov_base: p, iov_len: 16))
                            let from = starts[k] - records.readerIndex + 16
                            vecs.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress! + from),
                                              iov_len: h.totalSize - 16))
                        }
                        try active.append(vecs: &vecs, headers: headers, starts: relStarts, totalBytes: totalBytes, config: _config)
                    }
                }
            }
            for h in headers where h.producerID >= 0 { producers.record(h) }
            if _highWatermarkFollowsEnd { _highWatermark = next }
            let count = headers.reduce(0) { $0 + Int($1.recordsCount) }
            unflushedMessages += Int64(count)
            if oldestUnflushedMs == nil { oldestUnflushedMs = nowMs }
            if !waiters.isEmpty {
                notify = Array(waiters.values)
                waiters.removeAll(keepingCapacity: true)
            }
            return AppendResult(baseOffset: base, lastOffset: next - 1, logAppendTime: appendTime,
                                logStartOffset: _logStartOffset, recordCount: count, isDuplicate: false,
                                flushDue: unflushedMessages >= _config.flushMessages)
        }
        for n in notify { n() }
        return result
    }

    /// Starts a new segment when the active one is full or old. Called with the lock held.
    private func maybeRoll(incomingBytes: Int64, nowMs: Int64, lastOffsetDelta: Int64) throws {
        let active = segments.last!
        guard !active.isEmpty else { return }
        let full = active.size + incomingBytes > _config.segmentBytes
        let age = elapsedMs(since: active.firstBatchTimestamp.map { max($0, active.createdAtMs) } ?? active.createdAtMs, now: nowMs)
        let old = age >= _config.segmentMs
        let offsetOverflow = active.nextOffset + lastOffsetDelta - active.baseOffset > Int64(Int32.max)
        if full || old || offsetOverflow {
            try rollLocked(nowMs: nowMs)
        }
    }

    private func rollLocked(nowMs: Int64) throws {
        let active = segments.last!
        try active.syncAll()
        let seg = try LogSegment.create(directory: directory, baseOffset: active.nextOffset, nowMs: nowMs)
        segments.append(seg)
        writeProducerSnapshot()
        syncDirectory(directory)
        logger.debug("rolled a new segment", metadata: ["base_offset": "\(seg.baseOffset)"])
    }

    /// Forces a new segment (used by tests and by time-based retention of the active segment).
    public func roll(nowMs: Int64) throws {
        try lock.withLock {
            guard !segments.last!.isEmpty else { return }
            try rollLocked(nowMs: nowMs)
        }
    }

    // MARK: - Flush

    /// fsyncs the active segment; everything appended before the call is durable when it returns.
    /// Runs outside the lock so produce and fetch continue meanwhile.
    @discardableResult
    public func flush() throws -> Int64 {
        let (file, end): (SegmentFile?, Int64) = lock.withLock {
            guard !closed, flushedOffset < logEndOffsetLocked else { return (nil, flushedOffset) }
            unflushedMessages = 0
            oldestUnflushedMs = nil
            return (segments.last!.log, logEndOffsetLocked)
        }
        guard let file else { return end }
        try file.sync()
        lock.withLock { if end > flushedOffset { flushedOffset = end } }
        return end
    }

    /// Offset below which everything is known to be on stable storage.
    public var durableOffset: Int64 { lock.withLock { flushedOffset } }

    /// Whether `flush.ms` asks for an fsync at `nowMs`.
    public func timeFlushDue(nowMs: Int64) -> Bool {
        lock.withLock { oldestUnflushedMs.map { elapsedMs(since: $0, now: nowMs) >= _config.flushMs } ?? false }
    }

    // MARK: - Read

    /// A contiguous byte range of one segment holding whole batches from the requested offset.
    public struct Slice: @unchecked Sendable {
        public let file: SegmentFile
        public let position: Int64
        public let length: Int
    }

    public struct ReadResult: @unchecked Sendable {
        public var slice: Slice?
        public var highWatermark: Int64
        public var logStartOffset: Int64
        public var logEndOffset: Int64

        public init(slice: Slice?, highWatermark: Int64, logStartOffset: Int64, logEndOffset: Int64) {
            self.slice = slice
            self.highWatermark = highWatermark
            self.logStartOffset = logStartOffset
            self.logEndOffset = logEndOffset
        }
    }

    /// Bytes to answer a fetch at `offset`: whole batches starting with the one containing `offset`,
    /// up to `maxBytes` (but always the first whole batch, even if larger), never past the high
    /// watermark unless `uncommitted` (replica fetches read up to the log end).
    public func read(offset: Int64, maxBytes: Int, uncommitted: Bool = false) throws -> ReadResult {
        try lock.withLock {
            let end = logEndOffsetLocked
            let limit = uncommitted ? end : _highWatermark
            var result = ReadResult(slice: nil, highWatermark: _highWatermark, logStartOffset: _logStartOffset, logEndOffset: end)
            guard offset >= _logStartOffset, offset <= end else {
                throw LogError.offsetOutOfRange(requested: offset, logStart: _logStartOffset, logEnd: end)
            }
            guard offset < limit else { return result }
            // Last segment whose base is <= offset, moving on if offset is past its end (compacted gaps).
            var idx = segmentIndex(for: offset)
            while idx < segments.count {
                let seg = segments[idx]
                if let pos = try seg.position(of: offset) {
                    var stop = seg.size
                    if limit < seg.nextOffset, let lp = try seg.position(of: limit) { stop = lp }
                    guard stop > pos else { return result }
                    let first = try seg.batchSize(at: pos)
                    let length = max(min(stop - pos, Int64(maxBytes)), min(first, stop - pos))
                    result.slice = Slice(file: seg.log, position: pos, length: Int(length))
                    return result
                }
                idx += 1
            }
            return result
        }
    }

    private func segmentIndex(for offset: Int64) -> Int {
        segments.lastIndex(below: { $0.baseOffset <= offset }) ?? 0
    }

    /// Registers a one-shot callback for the next append (or close). Returns an id for ``removeWaiter(_:)``.
    public func addWaiter(_ callback: @escaping @Sendable () -> Void) -> UInt64 {
        lock.withLock {
            nextWaiterID &+= 1
            waiters[nextWaiterID] = callback
            return nextWaiterID
        }
    }

    public func removeWaiter(_ id: UInt64) {
        lock.withLock { _ = waiters.removeValue(forKey: id) }
    }

    // MARK: - Offsets by time

    /// The earliest offset whose timestamp is >= `timestamp`, and that timestamp; nil if none.
    public func offset(forTimestamp timestamp: Int64) throws -> (offset: Int64, timestamp: Int64)? {
        try lock.withLock {
            for seg in segments where seg.nextOffset > _logStartOffset && seg.maxTimestamp >= timestamp {
                if let hit = try seg.offset(forTimestamp: timestamp, from: _logStartOffset), hit.offset < _highWatermark {
                    return hit
                }
            }
            return nil
        }
    }

    /// Offset and timestamp of the record with the largest timestamp (ListOffsets -3).
    public var maxTimestampOffset: (offset: Int64, timestamp: Int64)? {
        lock.withLock {
            var best: (Int64, Int64)? = nil
            for seg in segments where seg.maxTimestamp >= 0 && seg.offsetOfMaxTimestamp >= _logStartOffset {
                if best == nil || seg.maxTimestamp > best!.1 { best = (seg.offsetOfMaxTimestamp, seg.maxTimestamp) }
            }
            return best
        }
    }

    // MARK: - Retention

    /// Deletes whole segments that `retention.ms` / `retention.bytes` no longer keep, and advances
    /// the log start offset. The active segment is rolled first if it alone has expired by time.
    /// Returns the number of segments deleted.
    @discardableResult
    public func enforceRetention(nowMs: Int64) throws -> Int {
        try lock.withLock {
            guard !closed, _config.delete else { return 0 }
            var deleted = 0
            if _config.retentionMs >= 0, let active = segments.last, !active.isEmpty,
               active.maxTimestamp >= 0, elapsedMs(since: active.maxTimestamp, now: nowMs) > _config.retentionMs,
               segments.dropLast().allSatisfy({ elapsedMs(since: $0.maxTimestamp, now: nowMs) > _config.retentionMs })
            {
                try rollLocked(nowMs: nowMs)
            }
            func drop() {
                let seg = segments.removeFirst()
                seg.deleteFiles()
                deleted += 1
                _logStartOffset = max(_logStartOffset, segments[0].baseOffset)
            }
            if _config.retentionMs >= 0 {
                while segments.count > 1, elapsedMs(since: segments[0].maxTimestamp, now: nowMs) > _config.retentionMs {
                    drop()
                }
            }
            if _config.retentionBytes >= 0 {
                var total = segments.reduce(Int64(0)) { $0 + $1.size }
                while segments.count > 1, total - segments[0].size >= _config.retentionBytes {
                    total -= segments[0].size
                    drop()
                }
            }
            if deleted > 0 {
                syncDirectory(directory)
                logger.info("retention deleted old segments",
                            metadata: ["segments": "\(deleted)", "log_start_offset": "\(_logStartOffset)"])
            }
            return deleted
        }
    }

    /// Moves the log start offset forward to `offset` (DeleteRecords), deleting segments wholly below
    /// it. Returns the new log start offset.
    public func deleteRecords(before offset: Int64) throws -> Int64 {
        try lock.withLock {
            let target = offset < 0 ? _highWatermark : offset
            guard target <= _highWatermark else {
                throw LogError.offsetOutOfRange(requested: offset, logStart: _logStartOffset, logEnd: _highWatermark)
            }
            guard target > _logStartOffset else { return _logStartOffset }
            _logStartOffset = target
            while segments.count > 1, segments[1].baseOffset <= target {
                segments.removeFirst().deleteFiles()
            }
            let tmp = "\(directory)/\(Self.logStartFile).tmp"
            try "\(target)\n".write(toFile: tmp, atomically: false, encoding: .utf8)
            rename(tmp, "\(directory)/\(Self.logStartFile)")
            syncDirectory(directory)
            return target
        }
    }
}
