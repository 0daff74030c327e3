import Foundation
import FileLayer
import KafkaProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The log of one topic partition: an ordered list of segments in `<dataDir>/<topic>-<partition>/`.
///
/// Invariants: offsets are assigned contiguously and never change; `logStartOffset <= durableOffset
/// <= logEndOffset`; only the last (active) segment is written. Every mutable field is guarded by
/// `lock`, which is held for bookkeeping and the `pwritev` of an append but never for an fsync, a
/// file creation (except a roll, which callers run off the event loops) or while a fetch response
/// is written to a socket: readers take a reference to the segment file and read outside the lock.
///
/// What a consumer may read (the high watermark) is not decided here: ``read(offset:maxBytes:upTo:)``
/// takes the limit from the layer above, which knows whether unflushed data may be served.
public final class PartitionLog: @unchecked Sendable {
    public let topic: TopicName
    public let partition: Int32
    public private(set) var directory: String
    let fs: any FileSystem
    let logger: Logger
    let lock = NIOLock()

    var segments: [LogSegment]
    var _config: LogConfig
    private var _logStartOffset: Int64
    private var producers: ProducerStateTable
    /// Everything below is on stable storage.
    private var flushedOffset: Int64
    /// A segment was created (or the directory changed) since the directory was last synced.
    private var directoryDirty = false
    private var unflushedMessages: Int64 = 0
    private var oldestUnflushedMs: Int64? = nil
    var closed = false
    /// An fsync or write failed: the log takes no more writes (Kafka takes the log directory offline).
    private var failure: String? = nil
    /// Leader epoch stamped into appended batches; -1 until ``becomeLeader(epoch:)``.
    private var _leaderEpoch: Int32 = -1
    private var epochs: LeaderEpochCache

    static let cleanShutdownFile = ".clean-shutdown"
    static let logStartFile = "log-start-offset"
    static let producerSnapshotFile = "producer-state.snapshot"
    static let leaderEpochFile = "leader-epoch-checkpoint"

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
    /// After an unclean shutdown (no marker file) every segment from the one holding
    /// `recoveryPoint` (an offset known to have been durable) onwards is validated batch by batch
    /// and cut at the first torn or corrupt batch; segments after a cut are removed, since they
    /// follow a hole. The recovered tail is then synced, so what the log holds afterwards is durable.
    /// Idempotent-producer state is reloaded from its snapshot plus the batches after it.
    public static func open(fs: any FileSystem = PosixFileSystem(), directory: String, topic: TopicName, partition: Int32,
                            config: LogConfig, recoveryPoint: Int64 = 0, nowMs: Int64, logger: Logger) throws -> PartitionLog {
        try fs.createDirectory(directory)
        // A compaction that did not finish left only staged files behind; the originals are intact.
        try fs.removeDirectory("\(directory)/.cleaning")
        let marker = "\(directory)/\(cleanShutdownFile)"
        let clean = fs.exists(marker)
        if clean { try fs.removeFile(marker) }

        let names = try fs.contentsOfDirectory(directory)
        let bases = names.compactMap { $0.hasSuffix(".log") ? Int64($0.dropLast(4)) : nil }.sorted()
        // Index files without a log are leftovers of a deleted segment.
        for name in names where name.hasSuffix(".index") || name.hasSuffix(".timeindex") {
            let stem = name.split(separator: ".").first.map(String.init) ?? ""
            if let b = Int64(stem), !bases.contains(b) { try fs.removeFile("\(directory)/\(name)") }
        }

        var checkpointStart: Int64 = 0
        if let text = try fs.readText("\(directory)/\(logStartFile)"),
           let v = Int64(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            checkpointStart = v
        }

        let recoverFrom = clean ? Int64.max : (bases.last { $0 <= recoveryPoint } ?? bases.first ?? 0)
        var segments: [LogSegment] = []
        var recovered: [LogSegment] = []
        var tornAt: Int64? = nil
        for base in bases {
            if let tornAt {
                // An earlier segment lost its tail: everything after it follows a hole.
                logger.warning("removing a segment that follows a torn one", metadata: [
                    "topic": "\(topic)", "partition": "\(partition)", "segment": "\(base)", "torn_at": "\(tornAt)"])
                for suffix in [".log", ".index", ".timeindex"] { try fs.removeFile("\(directory)/\(LogSegment.fileName(base, suffix))") }
                continue
            }
            let recover = base >= recoverFrom
            let (seg, cut) = try LogSegment.open(fs: fs, directory: directory, baseOffset: base, recover: recover,
                                                 config: config, nowMs: nowMs)
            if cut > 0 {
                tornAt = seg.nextOffset
                logger.warning("recovered partition log: cut a torn or corrupt tail",
                               metadata: ["topic": "\(topic)", "partition": "\(partition)",
                                          "segment": "\(base)", "bytes_removed": "\(cut)", "end_offset": "\(seg.nextOffset)"])
            }
            if recover { recovered.append(seg) }
            segments.append(seg)
        }
        // Drop empty trailing segments left behind by a roll that crashed, except the first one.
        while segments.count > 1, let last = segments.last, last.isEmpty, last.baseOffset != segments[segments.count - 2].nextOffset {
            last.deleteFiles()
            segments.removeLast()
            recovered.removeAll { $0 === last }
        }
        var created = false
        if segments.isEmpty {
            segments.append(try LogSegment.create(fs: fs, directory: directory, baseOffset: checkpointStart, nowMs: nowMs))
            created = true
        }
        // After a crash the recovered bytes may sit only in the page cache: make them durable now.
        for seg in recovered { try seg.syncAll() }
        if !recovered.isEmpty || created { try fs.syncDirectory(directory) }

        let end = segments.last!.nextOffset
        var epochs = (try fs.readText("\(directory)/\(leaderEpochFile)")).flatMap(LeaderEpochCache.init(text:)) ?? LeaderEpochCache()
        let before = epochs
        // Epochs that start at or beyond the recovered end wrote nothing that survived.
        epochs.truncate(fromEnd: end)
        epochs.truncate(fromStart: max(checkpointStart, segments[0].baseOffset))
        let log = PartitionLog(fs: fs, topic: topic, partition: partition, directory: directory, config: config,
                               segments: segments, logStartOffset: max(checkpointStart, segments[0].baseOffset),
                               epochs: epochs, logger: logger)
        if epochs != before { try log.writeEpochs(epochs) }
        try log.loadProducerState()
        if !clean && !bases.isEmpty {
            logger.info("opened partition log after an unclean shutdown",
                        metadata: ["topic": "\(topic)", "partition": "\(partition)", "recovered_segments": "\(recovered.count)",
                                   "log_start_offset": "\(log._logStartOffset)", "log_end_offset": "\(end)"])
        }
        return log
    }

    private init(fs: any FileSystem, topic: TopicName, partition: Int32, directory: String, config: LogConfig,
                 segments: [LogSegment], logStartOffset: Int64, epochs: LeaderEpochCache, logger: Logger) {
        self.fs = fs
        self.topic = topic
        self.partition = partition
        self.directory = directory
        self._config = config
        self.segments = segments
        self._logStartOffset = min(logStartOffset, segments.last!.nextOffset)
        self.flushedOffset = segments.last!.nextOffset
        self.producers = ProducerStateTable()
        self.epochs = epochs
        var l = logger
        l[metadataKey: "topic"] = "\(topic)"
        l[metadataKey: "partition"] = "\(partition)"
        self.logger = l
    }

    private func loadProducerState() throws {
        let end = logEndOffsetLocked
        var replayFrom = segments.last!.baseOffset
        if let bytes = try fs.readFile("\(directory)/\(Self.producerSnapshotFile)"),
           let (table, offset) = ProducerStateTable.load(ByteBuffer(bytes: bytes)) {
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
                producers.record(h, appendTimeMs: seg.createdAtMs)
            }
        }
    }

    private func writeProducerSnapshot(_ snapshot: ByteBuffer) throws {
        try fs.writeAtomically(Array(snapshot.readableBytesView), to: "\(directory)/\(Self.producerSnapshotFile)")
    }

    private func writeEpochs(_ cache: LeaderEpochCache) throws {
        try fs.writeAtomically(cache.text, to: "\(directory)/\(Self.leaderEpochFile)")
    }

    /// Flushes everything, saves producer state and marks the log cleanly shut down.
    public func close() {
        lock.withLock {
            guard !closed else { return }
            closed = true
            do {
                for s in segments { try s.syncAll() }
                try writeProducerSnapshot(producers.snapshot(at: logEndOffsetLocked))
                let marker = try fs.openFile("\(directory)/\(Self.cleanShutdownFile)", create: true)
                try marker.sync()
                try fs.syncDirectory(directory)
            } catch {
                // Without the marker the next start recovers the log as after a crash.
                logger.error("could not close the log cleanly; it will be recovered on the next start", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Closes the log and renames its directory to `newDirectory` (topic deletion: the data is
    /// removed later, and a topic of the same name can be created at once in a fresh directory).
    public func detach(renamingTo newDirectory: String) throws {
        try lock.withLock {
            closed = true
            try fs.rename(directory, newDirectory)
            directory = newDirectory
        }
    }

    // MARK: - State

    public var config: LogConfig {
        get { lock.withLock { _config } }
        set { lock.withLock { _config = newValue } }
    }

    private var logEndOffsetLocked: Int64 { segments.last?.nextOffset ?? _logStartOffset }

    public struct Offsets: Sendable, Equatable {
        public var logStartOffset: Int64
        /// Everything below is on stable storage.
        public var durableOffset: Int64
        public var logEndOffset: Int64
    }

    public var offsets: Offsets {
        lock.withLock { Offsets(logStartOffset: _logStartOffset, durableOffset: flushedOffset, logEndOffset: logEndOffsetLocked) }
    }

    /// Offset below which everything is known to be on stable storage.
    public var durableOffset: Int64 { lock.withLock { flushedOffset } }

    /// Why the log takes no writes, if a storage failure took it offline.
    public var offlineReason: String? { lock.withLock { failure } }

    public var leaderEpoch: Int32 { lock.withLock { _leaderEpoch } }

    public var leaderEpochs: LeaderEpochCache { lock.withLock { epochs } }

    /// Makes `epoch` the epoch stamped into every batch appended from now on, starting at the
    /// current log end, and persists the epoch history. Epochs only grow.
    public func becomeLeader(epoch: Int32) throws {
        let changed: LeaderEpochCache? = lock.withLock {
            guard epoch > _leaderEpoch else { return nil }
            _leaderEpoch = epoch
            return epochs.assign(epoch: epoch, startOffset: logEndOffsetLocked) ? epochs : nil
        }
        if let changed { try writeEpochs(changed) }
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
    /// CRC, structure and record checks run before the lock is taken. Batches are written with one
    /// `pwritev` straight from `records`' storage; only the 16 header bytes that change (base offset,
    /// leader epoch) come from a scratch area, so the payload is never copied.
    ///
    /// When the active segment is full or old, a new one is needed first. With `allowRoll` the roll
    /// happens here; without it (on an event loop, where no file may be created) the call throws
    /// ``LogError/rollRequired`` and the caller repeats it off the loop with `allowRoll`.
    public func append(_ records: ByteBuffer, nowMs: Int64, allowRoll: Bool = true) throws -> AppendResult {
        var headers: [RecordBatchHeader] = []
        var starts: [Int] = []
        var records = records
        var i = records.readerIndex
        let config = lock.withLock { _config }
        let rules = config.validationRules(nowMs: nowMs)
        var repairs: [(index: Int, repair: ProducedBatchRepair)] = []
        while i < records.writerIndex {
            var h: RecordBatchHeader
            do {
                h = try RecordBatch.validate(records, at: i)
                if Int64(h.totalSize) > config.maxMessageBytes {
                    throw LogError.batchTooLarge(size: h.totalSize, limit: config.maxMessageBytes)
                }
                try RecordBatch.validateForProduce(h)
                let repair = try RecordBatch.validateRecords(records, at: i, header: h, rules: rules)
                if repair.isNeeded { repairs.append((headers.count, repair)) }
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
        if !repairs.isEmpty {
            // Broker-owned fields the producer got wrong are set as Kafka's validator sets them: the
            // batches are copied (only these; a well-formed batch is written from the request's bytes).
            (records, headers, starts) = try Self.applying(repairs, to: records, headers: headers, starts: starts)
        }
        while true {
            do {
                return try appendValidated(records, headers: headers, starts: starts, nowMs: nowMs)
            } catch LogError.rollRequired where allowRoll {
                try roll(nowMs: nowMs, ifNeededFor: headers)
            }
        }
    }

    /// `records` with the batches named in `repairs` replaced by their repaired copies.
    private static func applying(_ repairs: [(index: Int, repair: ProducedBatchRepair)], to records: ByteBuffer,
                                 headers: [RecordBatchHeader], starts: [Int]) throws -> (ByteBuffer, [RecordBatchHeader], [Int]) {
        var out = ByteBufferAllocator().buffer(capacity: records.readableBytes + 64)
        var newHeaders: [RecordBatchHeader] = []
        var newStarts: [Int] = []
        var next = repairs.makeIterator()
        var pending = next.next()
        for (k, h) in headers.enumerated() {
            newStarts.append(out.writerIndex)
            if let p = pending, p.index == k {
                pending = next.next()
                do {
                    var fixed = try RecordBatch.repaired(records, at: starts[k], header: h, p.repair)
                    var fh = try RecordBatchHeader(fixed, at: fixed.readerIndex)
                    fh.baseOffset = 0
                    newHeaders.append(fh)
                    out.writeBuffer(&fixed)
                } catch {
                    throw LogError.invalidBatch("the batch could not be repaired: \(error)")
                }
            } else {
                var one = records.getSlice(at: starts[k], length: h.totalSize)!
                newHeaders.append(h)
                out.writeBuffer(&one)
            }
        }
        return (out, newHeaders, newStarts)
    }

    private func appendValidated(_ records: ByteBuffer, headers inHeaders: [RecordBatchHeader], starts: [Int],
                                 nowMs: Int64) throws -> AppendResult {
        var headers = inHeaders
        return try lock.withLock {
            guard !closed else { throw LogError.closed }
            if let failure { throw LogError.offline(failure) }
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
                table.record(h, appendTimeMs: nowMs)
            }
            let totalBytes = headers.reduce(Int64(0)) { $0 + Int64($1.totalSize) }
            if rollNeededLocked(incomingBytes: totalBytes, nowMs: nowMs, offsets: headers.reduce(0) { $0 + Int64($1.lastOffsetDelta) + 1 }) {
                throw LogError.rollRequired
            }
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
            do {
                if appendTime >= 0 {
                    // LogAppendTime changes CRC-covered bytes: copy, restamp, write the copy.
                    var copy = ByteBuffer()
                    for (k, h) in headers.enumerated() {
                        var one = records.getSlice(at: starts[k], length: h.totalSize)!
                        RecordBatch.setBaseOffset(h.baseOffset, in: &one, at: one.readerIndex)
                        RecordBatch.setPartitionLeaderEpoch(h.partitionLeaderEpoch, in: &one, at: one.readerIndex)
                        try RecordBatch.setLogAppendTime(appendTime, in: &one, at: one.readerIndex)
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
            } catch {
                // A short or failed write leaves the file in an unknown state: take the log offline
                // rather than append after bytes that may be garbage.
                failure = "write failed: \(error)"
                logger.error("taking the partition offline after a failed write", metadata: ["error": "\(error)"])
                throw LogError.offline(failure!)
            }
            for h in headers where h.producerID >= 0 { producers.record(h, appendTimeMs: nowMs) }
            let count = headers.reduce(0) { $0 + Int($1.recordsCount) }
            unflushedMessages += Int64(count)
            if oldestUnflushedMs == nil { oldestUnflushedMs = nowMs }
            return AppendResult(baseOffset: base, lastOffset: next - 1, logAppendTime: appendTime,
                                logStartOffset: _logStartOffset, recordCount: count, isDuplicate: false,
                                flushDue: unflushedMessages >= _config.flushMessages)
        }
    }

    /// Whether the active segment must be closed before `incomingBytes` more (holding `offsets`
    /// offsets) go in: it is full, older than `segment.ms`, or its relative offsets would overflow.
    private func rollNeededLocked(incomingBytes: Int64, nowMs: Int64, offsets: Int64) -> Bool {
        let active = segments.last!
        guard !active.isEmpty else { return false }
        let full = active.size + incomingBytes > _config.segmentBytes
        let age = elapsedMs(since: active.firstBatchTimestamp.map { max($0, active.createdAtMs) } ?? active.createdAtMs, now: nowMs)
        let old = age >= _config.segmentMs
        let offsetOverflow = active.nextOffset + offsets - active.baseOffset > Int64(Int32.max)
        return full || old || offsetOverflow
    }

    /// Starts a new segment if the batches described by `headers` still need one (another caller
    /// may have rolled meanwhile). Creates files: never call it on an event loop.
    private func roll(nowMs: Int64, ifNeededFor headers: [RecordBatchHeader]) throws {
        let totalBytes = headers.reduce(Int64(0)) { $0 + Int64($1.totalSize) }
        let offsets = headers.reduce(0) { $0 + Int64($1.lastOffsetDelta) + 1 }
        let snapshot: ByteBuffer? = try lock.withLock {
            guard !closed else { throw LogError.closed }
            guard rollNeededLocked(incomingBytes: totalBytes, nowMs: nowMs, offsets: offsets) else { return nil }
            return try rollLocked(nowMs: nowMs)
        }
        if let snapshot { try afterRoll(snapshot) }
    }

    /// Opens a new active segment at the log end; returns the producer snapshot to write (outside
    /// the lock). The old segment's bytes are synced by the next flush, which syncs every segment
    /// holding offsets above the durable offset, and the directory with them.
    private func rollLocked(nowMs: Int64) throws -> ByteBuffer {
        let seg = try LogSegment.create(fs: fs, directory: directory, baseOffset: logEndOffsetLocked, nowMs: nowMs)
        segments.append(seg)
        directoryDirty = true
        logger.debug("rolled a new segment", metadata: ["base_offset": "\(seg.baseOffset)"])
        return producers.snapshot(at: seg.baseOffset)
    }

    private func afterRoll(_ snapshot: ByteBuffer) throws {
        try writeProducerSnapshot(snapshot)
    }

    /// Forces a new segment (tests, and time-based retention of the active segment).
    public func roll(nowMs: Int64) throws {
        let snapshot: ByteBuffer? = try lock.withLock {
            guard !closed, !segments.last!.isEmpty else { return nil }
            return try rollLocked(nowMs: nowMs)
        }
        if let snapshot { try afterRoll(snapshot) }
    }

    /// Rolls ahead of need when the active segment is nearly full (90% of `segment.bytes`) or has
    /// reached `segment.ms`, so appends on an event loop rarely find a roll due. Housekeeping calls
    /// it off the loops. Returns whether it rolled.
    @discardableResult
    public func rollIfNearlyDue(nowMs: Int64) throws -> Bool {
        let snapshot: ByteBuffer? = try lock.withLock {
            guard !closed, failure == nil else { return nil }
            let active = segments.last!
            guard !active.isEmpty else { return nil }
            let nearlyFull = active.size >= _config.segmentBytes / 10 * 9
            let due = rollNeededLocked(incomingBytes: 0, nowMs: nowMs, offsets: 0)
            guard nearlyFull || due else { return nil }
            return try rollLocked(nowMs: nowMs)
        }
        if let snapshot { try afterRoll(snapshot) }
        return snapshot != nil
    }

    // MARK: - Flush

    /// Makes everything appended before the call durable; returns the offset below which all is.
    /// Syncs, outside the lock, every segment holding offsets at or above the durable offset (the
    /// active one, and the one before it after a roll) and the directory if a segment was created.
    /// A failed sync takes the log offline: no later write may be acknowledged after bytes that the
    /// disk may have lost.
    @discardableResult
    public func flush() throws -> Int64 {
        let plan: (files: [any StorageFile], end: Int64, syncDirectory: Bool)? = try lock.withLock {
            if let failure { throw LogError.offline(failure) }
            let end = logEndOffsetLocked
            if closed {
                guard flushedOffset >= end else { throw LogError.closed }
                return nil
            }
            guard flushedOffset < end || directoryDirty else { return nil }
            unflushedMessages = 0
            oldestUnflushedMs = nil
            var files: [any StorageFile] = []
            for seg in segments where seg.nextOffset > flushedOffset || seg === segments.last! {
                files.append(seg.log)
                if seg !== segments.last! { files += [seg.index.file, seg.timeIndex.file] }
            }
            let dir = directoryDirty
            directoryDirty = false
            return (files, end, dir)
        }
        guard let plan else { return durableOffset }
        do {
            for f in plan.files { try f.sync() }
            if plan.syncDirectory { try fs.syncDirectory(directory) }
        } catch {
            let why = "fsync failed: \(error)"
            lock.withLock {
                failure = why
                directoryDirty = directoryDirty || plan.syncDirectory
            }
            logger.error("taking the partition offline: an fsync failed", metadata: ["error": "\(error)"])
            throw LogError.offline(why)
        }
        return lock.withLock {
            if plan.end > flushedOffset { flushedOffset = plan.end }
            return flushedOffset
        }
    }

    /// Whether `flush.ms` asks for an fsync at `nowMs`.
    public func timeFlushDue(nowMs: Int64) -> Bool {
        lock.withLock { oldestUnflushedMs.map { elapsedMs(since: $0, now: nowMs) >= _config.flushMs } ?? false }
    }

    // MARK: - Read

    /// A contiguous byte range of one segment holding whole batches from the requested offset.
    public struct Slice: @unchecked Sendable {
        public let file: any StorageFile
        public let position: Int64
        public let length: Int
    }

    public struct ReadResult: @unchecked Sendable {
        public var slice: Slice?
        public var logStartOffset: Int64
        public var logEndOffset: Int64

        public init(slice: Slice?, logStartOffset: Int64, logEndOffset: Int64) {
            self.slice = slice
            self.logStartOffset = logStartOffset
            self.logEndOffset = logEndOffset
        }
    }

    /// Bytes to answer a fetch at `offset`: whole batches starting with the one containing `offset`,
    /// up to `maxBytes` (but always the first whole batch, even if larger), never past `upTo`
    /// (the high watermark the caller serves; the log end when nil).
    public func read(offset: Int64, maxBytes: Int, upTo: Int64? = nil) throws -> ReadResult {
        try lock.withLock {
            if let failure { throw LogError.offline(failure) }
            let end = logEndOffsetLocked
            let limit = min(upTo ?? end, end)
            var result = ReadResult(slice: nil, logStartOffset: _logStartOffset, logEndOffset: end)
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
                    let length = max(min(stop - pos, Int64(max(1, maxBytes))), min(first, stop - pos))
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

    // MARK: - Offsets by time

    /// The earliest offset below `upTo` whose timestamp is >= `timestamp`, and that timestamp.
    public func offset(forTimestamp timestamp: Int64, upTo: Int64? = nil) throws -> (offset: Int64, timestamp: Int64)? {
        try lock.withLock {
            let limit = upTo ?? logEndOffsetLocked
            for seg in segments where seg.nextOffset > _logStartOffset && seg.maxTimestamp >= timestamp {
                if let hit = try seg.offset(forTimestamp: timestamp, from: _logStartOffset), hit.offset < limit {
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

    // MARK: - Producer state

    /// Forgets idempotent producers that have not appended for `maxAgeMs` (`producer.id.expiration.ms`).
    @discardableResult
    public func expireProducers(nowMs: Int64, maxAgeMs: Int64) -> Int {
        lock.withLock { producers.expire(nowMs: nowMs, maxAgeMs: maxAgeMs) }
    }

    public var producerCount: Int { lock.withLock { producers.entries.count } }

    // MARK: - Retention

    /// Deletes whole segments that `retention.ms` / `retention.bytes` no longer keep, and advances
    /// the log start offset. The active segment is rolled first if it alone has expired by time.
    /// Returns the number of segments deleted. Runs off the event loops (it removes files).
    @discardableResult
    public func enforceRetention(nowMs: Int64) throws -> Int {
        var snapshot: ByteBuffer? = nil
        var epochsToWrite: LeaderEpochCache? = nil
        var removed: [LogSegment] = []
        try lock.withLock {
            guard !closed, failure == nil, _config.delete else { return }
            if _config.retentionMs >= 0, let active = segments.last, !active.isEmpty,
               active.maxTimestamp >= 0, elapsedMs(since: active.maxTimestamp, now: nowMs) > _config.retentionMs,
               segments.dropLast().allSatisfy({ elapsedMs(since: $0.maxTimestamp, now: nowMs) > _config.retentionMs })
            {
                snapshot = try rollLocked(nowMs: nowMs)
            }
            func drop() {
                removed.append(segments.removeFirst())
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
            if !removed.isEmpty {
                let before = epochs
                epochs.truncate(fromStart: _logStartOffset)
                if epochs != before { epochsToWrite = epochs }
            }
        }
        if let snapshot { try afterRoll(snapshot) }
        guard !removed.isEmpty else { return 0 }
        // Readers keep their open files; removing the names is safe outside the lock.
        for seg in removed { seg.deleteFiles() }
        try fs.syncDirectory(directory)
        if let epochsToWrite { try writeEpochs(epochsToWrite) }
        logger.info("retention deleted old segments",
                    metadata: ["segments": "\(removed.count)", "log_start_offset": "\(offsets.logStartOffset)"])
        return removed.count
    }

    /// Moves the log start offset forward to `offset` (DeleteRecords; -1 means `upTo`), deleting
    /// segments wholly below it, and persists it. `upTo` is the high watermark: records above it
    /// cannot be deleted. Returns the new log start offset. Runs off the event loops.
    public func deleteRecords(before offset: Int64, upTo: Int64? = nil) throws -> Int64 {
        let (target, removed, epochsToWrite): (Int64, [LogSegment], LeaderEpochCache?) = try lock.withLock {
            if let failure { throw LogError.offline(failure) }
            let limit = upTo ?? logEndOffsetLocked
            let target = offset < 0 ? limit : offset
            guard target <= limit else {
                throw LogError.offsetOutOfRange(requested: offset, logStart: _logStartOffset, logEnd: limit)
            }
            guard target > _logStartOffset else { return (_logStartOffset, [], nil) }
            _logStartOffset = target
            var removed: [LogSegment] = []
            while segments.count > 1, segments[1].baseOffset <= target {
                removed.append(segments.removeFirst())
            }
            let before = epochs
            epochs.truncate(fromStart: target)
            return (target, removed, epochs != before ? epochs : nil)
        }
        try fs.writeAtomically("\(target)\n", to: "\(directory)/\(Self.logStartFile)")
        for seg in removed { seg.deleteFiles() }
        if !removed.isEmpty { try fs.syncDirectory(directory) }
        if let epochsToWrite { try writeEpochs(epochsToWrite) }
        return target
    }
}
