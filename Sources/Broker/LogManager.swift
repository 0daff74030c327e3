import ClusterMetadata
import FileLayer
import Foundation
import KafkaProtocol
import Logging
import LogStorage
import NIOConcurrencyHelpers

/// The topics this broker hosts and their partitions.
///
/// Topic records live in the ``MetadataStore``; logs live in `<dataDir>/<topic>-<n>/`.
///
/// Locking: `lock` guards only the topic map, so produce and fetch lookups never wait for disk
/// work; `changes` serialises metadata changes, which do their file work (creating logs, fsyncing
/// the topic list) holding it but not `lock`. Every change does file I/O: call them off the event
/// loops.
///
/// The data directory is never destroyed: directories the broker does not know are left alone
/// (and moved aside only if a new topic needs the name); a deleted topic's directories are first
/// renamed to `<dir>.<id>-delete` (so a topic of the same name can be created at once) and removed
/// afterwards.
public final class LogManager: @unchecked Sendable {
    public struct Topic: Sendable {
        public var record: TopicRecord
        public var name: TopicName { TopicName(record.name) }
        public var partitions: [Partition]
        public var topicID: KafkaUUID
    }

    public let dataDirectory: String
    let fs: any FileSystem
    private let store: MetadataStore
    private let flusher: LogFlusher
    private let logger: Logger
    private let durableHighWatermark: Bool
    private let lock = NIOLock()
    private let changes = NIOLock()
    private var topics: [TopicName: Topic] = [:]
    private var creating: Set<TopicName> = []
    private var brokerDefaults: [String: String]
    private let clock: @Sendable () -> Int64

    static let recoveryPointFile = "recovery-point-offset-checkpoint"
    static let deletedSuffix = "-delete"
    static let straySuffix = "-stray"

    public init(fs: any FileSystem = PosixFileSystem(), dataDirectory: String, store: MetadataStore, flusher: LogFlusher,
                brokerDefaults: [String: String], durableHighWatermark: Bool, logger: Logger,
                clock: @escaping @Sendable () -> Int64 = { currentTimeMillis() }) throws {
        self.fs = fs
        self.dataDirectory = dataDirectory
        self.store = store
        self.flusher = flusher
        self.logger = logger
        self.brokerDefaults = brokerDefaults
        self.durableHighWatermark = durableHighWatermark
        self.clock = clock
        let records = try store.loadTopics()
        let recoveryPoints = Self.readRecoveryPoints(fs: fs, dataDirectory)
        let started = clock()
        var known = Set<String>()
        for r in records {
            let t = try openTopic(r, recoveryPoints: recoveryPoints)
            topics[t.name] = t
            for p in 0..<r.partitions { known.insert(PartitionLog.directoryName(topic: t.name, partition: p)) }
        }
        var leftovers: [String] = []
        var unknown: [String] = []
        for name in (try? fs.contentsOfDirectory(dataDirectory)) ?? [] where fs.isDirectory("\(dataDirectory)/\(name)") {
            if name.hasSuffix(Self.deletedSuffix) {
                leftovers.append("\(dataDirectory)/\(name)")
            } else if !known.contains(name) && !name.hasSuffix(Self.straySuffix) && PartitionLog.parseDirectoryName(name) != nil {
                unknown.append(name)
            }
        }
        if !unknown.isEmpty {
            logger.warning("leaving alone directories that belong to no known topic", metadata: [
                "directories": "\(unknown.sorted().joined(separator: ","))", "data_dir": "\(dataDirectory)"])
        }
        removeInBackground(leftovers)
        if !records.isEmpty {
            logger.info("loaded topics", metadata: ["topics": "\(records.count)",
                                                    "partitions": "\(records.reduce(0) { $0 + Int($1.partitions) })",
                                                    "ms": "\(clock() - started)"])
        }
        try writeRecoveryPoints()
    }

    private func openTopic(_ r: TopicRecord, recoveryPoints: [String: Int64]) throws -> Topic {
        let name = TopicName(r.name)
        var partitions: [Partition] = []
        for p in 0..<r.partitions {
            let dir = PartitionLog.directoryName(topic: name, partition: p)
            partitions.append(try openPartition(name, p, r.configs, recoveryPoint: recoveryPoints[dir] ?? 0))
        }
        return Topic(record: r, partitions: partitions, topicID: Self.parseUUID(r.topicID))
    }

    private func openPartition(_ name: TopicName, _ p: Int32, _ configs: [String: String], recoveryPoint: Int64) throws -> Partition {
        let log = try PartitionLog.open(fs: fs, directory: "\(dataDirectory)/\(PartitionLog.directoryName(topic: name, partition: p))",
                                        topic: name, partition: p,
                                        config: LogConfig(overrides: configs, brokerDefaults: brokerDefaults),
                                        recoveryPoint: recoveryPoint, nowMs: clock(), logger: logger)
        let partition = Partition(log: log, flusher: flusher, durableHighWatermark: durableHighWatermark)
        try partition.becomeLeader()
        return partition
    }

    static func parseUUID(_ s: String) -> KafkaUUID {
        let hex = s.replacingOccurrences(of: "-", with: "")
        guard hex.count == 32, let hi = UInt64(hex.prefix(16), radix: 16), let lo = UInt64(hex.suffix(16), radix: 16) else {
            return .zero
        }
        return KafkaUUID(high: hi, low: lo)
    }

    // MARK: Recovery points

    /// `0`, count, then `<topic> <partition> <offset>` per line: offsets below which each log was
    /// durable when last checkpointed. After a crash, recovery validates only from there on.
    private static func readRecoveryPoints(fs: any FileSystem, _ dir: String) -> [String: Int64] {
        guard let text = try? fs.readText("\(dir)/\(recoveryPointFile)") else { return [:] }
        var out: [String: Int64] = [:]
        for line in text.split(separator: "\n").dropFirst(2) {
            let parts = line.split(separator: " ")
            guard parts.count == 3, let p = Int32(parts[1]), let o = Int64(parts[2]) else { continue }
            out[PartitionLog.directoryName(topic: TopicName(String(parts[0])), partition: p)] = o
        }
        return out
    }

    /// Records every log's durable offset (housekeeping and shutdown).
    public func writeRecoveryPoints() throws {
        let lines = allPartitions.map { "\($0.topic.rawValue) \($0.index) \($0.log.durableOffset)\n" }
        try fs.writeAtomically("0\n\(lines.count)\n" + lines.joined(), to: "\(dataDirectory)/\(Self.recoveryPointFile)")
    }

    // MARK: Lookups

    public func topic(_ name: TopicName) -> Topic? {
        lock.withLock { topics[name] }
    }

    public func partition(_ name: TopicName, _ index: Int32) -> Partition? {
        lock.withLock {
            guard let t = topics[name], index >= 0, Int(index) < t.partitions.count else { return nil }
            return t.partitions[Int(index)]
        }
    }

    public func log(_ name: TopicName, _ index: Int32) -> PartitionLog? {
        partition(name, index)?.log
    }

    public var allTopics: [Topic] {
        lock.withLock { Array(topics.values) }.sorted { $0.record.name < $1.record.name }
    }

    public var allPartitions: [Partition] {
        lock.withLock { topics.values.flatMap(\.partitions) }
    }

    public var allLogs: [PartitionLog] { allPartitions.map(\.log) }

    // MARK: Changes

    /// Refuses a client's change to a topic the broker owns (`__consumer_offsets`): its partition
    /// count decides where each group's commits live, its policy keeps them, and only the group
    /// coordinator may write to it. Appends and record deletion get INVALID_TOPIC_EXCEPTION as in
    /// Kafka; administrative changes get TOPIC_AUTHORIZATION_FAILED (no client principal may make them).
    public func refuseClientChange(to name: TopicName, _ what: String, code: ErrorCode = .topicAuthorizationFailed) throws {
        guard lock.withLock({ topics[name]?.record.isInternal }) == true else { return }
        throw BrokerError(code, "'\(name)' is an internal topic owned by the broker; clients may not \(what)")
    }

    /// Creates a topic: its partition directories and first segments are durable, then the topic
    /// list, and only then is the topic visible. With `validateOnly`, checks everything and changes nothing.
    @discardableResult
    public func createTopic(_ name: TopicName, partitions: Int32, replicationFactor: Int16, configs: [String: String],
                            validateOnly: Bool = false, isInternal: Bool = false) throws -> TopicRecord {
        if let why = name.validationError { throw BrokerError(.invalidTopicException, why) }
        if name == GroupCoordinator.topicName && !isInternal {
            throw BrokerError(.invalidTopicException, "'\(name)' is reserved for the broker's own use")
        }
        guard partitions >= 1 else {
            throw BrokerError(.invalidPartitions, "a topic needs at least 1 partition, got \(partitions)")
        }
        guard partitions <= 100_000 else {
            throw BrokerError(.invalidPartitions, "\(partitions) partitions is more than this broker allows (100000)")
        }
        guard replicationFactor == 1 else {
            throw BrokerError(.invalidReplicationFactor,
                              "replication factor \(replicationFactor) is larger than the 1 broker available in this region")
        }
        for (k, v) in configs {
            if let why = LogConfig.validate(k, v) { throw BrokerError(.invalidConfig, why) }
        }
        let record = TopicRecord(name: name.rawValue, topicID: KafkaUUID.random().description, partitions: partitions,
                                 replicationFactor: replicationFactor, configs: configs, isInternal: isInternal)
        try lock.withLock {
            if topics[name] != nil || creating.contains(name) {
                throw BrokerError(.topicAlreadyExists, "topic '\(name)' already exists")
            }
            if !validateOnly { creating.insert(name) }
        }
        if validateOnly { return record }
        defer { _ = lock.withLock { creating.remove(name) } }
        return try changes.withLock {
            var opened: [Partition] = []
            do {
                for p in 0..<partitions {
                    try moveAsideIfPresent(PartitionLog.directoryName(topic: name, partition: p))
                    opened.append(try openPartition(name, p, configs, recoveryPoint: 0))
                }
                try fs.syncDirectory(dataDirectory)
                try store.saveTopics(lock.withLock { topics.values.map(\.record) } + [record])
            } catch {
                for p in opened { p.log.close() }
                throw error
            }
            lock.withLock { topics[name] = Topic(record: record, partitions: opened, topicID: Self.parseUUID(record.topicID)) }
            logger.info("created topic", metadata: ["topic": "\(name)", "partitions": "\(partitions)",
                                                    "configs": "\(configs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))"])
            return record
        }
    }

    /// A directory a new partition needs but that holds something the broker does not know (left
    /// by a crash during a deletion, or put there by someone): renamed aside, never deleted.
    private func moveAsideIfPresent(_ name: String) throws {
        let path = "\(dataDirectory)/\(name)"
        guard fs.exists(path) else { return }
        let aside = "\(path).\(KafkaUUID.random().hexString)\(Self.straySuffix)"
        try fs.rename(path, aside)
        logger.warning("moved aside a directory a new topic needs", metadata: ["directory": "\(path)", "moved_to": "\(aside)"])
    }

    public func deleteTopic(_ name: TopicName) throws -> KafkaUUID {
        try refuseClientChange(to: name, "delete it")
        let removed: Topic = try changes.withLock {
            guard let t = lock.withLock({ topics[name] }) else { throw BrokerError.unknownTopic(name) }
            try store.saveTopics(lock.withLock { topics.values.filter { $0.name != name }.map(\.record) })
            lock.withLock { topics[name] = nil }
            // Renamed under each log's lock: an append racing the deletion either lands before the
            // rename (and goes with the topic) or fails and is retried against the new topic.
            var renamed: [String] = []
            let suffix = "\(KafkaUUID.random().hexString)\(Self.deletedSuffix)"
            for p in t.partitions {
                p.closeWaiters()
                let target = "\(p.log.directory).\(suffix)"
                do {
                    try p.log.detach(renamingTo: target)
                    renamed.append(target)
                } catch {
                    logger.error("could not rename a deleted partition's directory", metadata: ["directory": "\(p.log.directory)", "error": "\(error)"])
                }
            }
            try fs.syncDirectory(dataDirectory)
            removeInBackground(renamed)
            return t
        }
        logger.info("deleted topic", metadata: ["topic": "\(name)"])
        return removed.topicID
    }

    private func removeInBackground(_ paths: [String]) {
        guard !paths.isEmpty else { return }
        let fs = self.fs, logger = self.logger
        Thread.detachNewThread {
            for path in paths {
                do { try fs.removeDirectory(path) } catch {
                    logger.warning("could not remove a deleted topic's directory", metadata: ["directory": "\(path)", "error": "\(error)"])
                }
            }
        }
    }

    public func createPartitions(_ name: TopicName, count: Int32, validateOnly: Bool) throws {
        try refuseClientChange(to: name, "change its partition count")
        try changes.withLock {
            guard var t = lock.withLock({ topics[name] }) else { throw BrokerError.unknownTopic(name) }
            guard count > t.record.partitions else {
                throw BrokerError(.invalidPartitions,
                                  "topic '\(name)' already has \(t.record.partitions) partitions; the new count must be larger, got \(count)")
            }
            guard count <= 100_000 else { throw BrokerError(.invalidPartitions, "\(count) partitions is too many") }
            if validateOnly { return }
            var record = t.record
            record.partitions = count
            var added: [Partition] = []
            for p in t.record.partitions..<count {
                try moveAsideIfPresent(PartitionLog.directoryName(topic: name, partition: p))
                added.append(try openPartition(name, p, record.configs, recoveryPoint: 0))
            }
            try fs.syncDirectory(dataDirectory)
            try store.saveTopics(lock.withLock { topics.values.filter { $0.name != name }.map(\.record) } + [record])
            t.record = record
            t.partitions += added
            lock.withLock { topics[name] = t }
            logger.info("added partitions", metadata: ["topic": "\(name)", "partitions": "\(count)"])
        }
    }

    /// Replaces a topic's config overrides (after validation) and applies them to its live logs.
    public func setConfigs(_ name: TopicName, _ configs: [String: String], validateOnly: Bool) throws {
        try refuseClientChange(to: name, "change its configs")
        for (k, v) in configs {
            if let why = LogConfig.validate(k, v) { throw BrokerError(.invalidConfig, why) }
        }
        try changes.withLock {
            guard var t = lock.withLock({ topics[name] }) else { throw BrokerError.unknownTopic(name) }
            if validateOnly { return }
            t.record.configs = configs
            try store.saveTopics(lock.withLock { topics.values.filter { $0.name != name }.map(\.record) } + [t.record])
            lock.withLock { topics[name] = t }
            for p in t.partitions {
                p.log.config = LogConfig(overrides: configs, brokerDefaults: brokerDefaults)
            }
        }
        logger.info("changed topic configs", metadata: ["topic": "\(name)"])
    }

    /// The effective config of a topic.
    public func config(_ name: TopicName) -> LogConfig? {
        lock.withLock { topics[name].map { LogConfig(overrides: $0.record.configs, brokerDefaults: brokerDefaults) } }
    }

    // MARK: Housekeeping (off the event loops)

    /// Applies retention to every log; returns the number of segments deleted.
    @discardableResult
    public func enforceRetention() -> Int {
        var deleted = 0
        let now = clock()
        for log in allLogs {
            do {
                deleted += try log.enforceRetention(nowMs: now)
            } catch {
                logger.error("retention failed", metadata: ["topic": "\(log.topic)", "partition": "\(log.partition)",
                                                            "error": "\(error)"])
            }
        }
        return deleted
    }

    /// Rolls segments that are nearly full or due, so appends on the event loops seldom must.
    public func rollAhead() {
        let now = clock()
        for log in allLogs {
            do { try log.rollIfNearlyDue(nowMs: now) } catch {
                logger.error("rolling a segment failed", metadata: ["topic": "\(log.topic)", "partition": "\(log.partition)",
                                                                    "error": "\(error)"])
            }
        }
    }

    /// Forgets idempotent producers idle for `producer.id.expiration.ms`.
    @discardableResult
    public func expireProducers(maxAgeMs: Int64) -> Int {
        let now = clock()
        return allLogs.reduce(0) { $0 + $1.expireProducers(nowMs: now, maxAgeMs: maxAgeMs) }
    }

    /// Runs a compaction pass on every compacted log whose dirty ratio calls for one.
    @discardableResult
    public func compactLogs() -> Int {
        var cleaned = 0
        let now = clock()
        for log in allLogs where log.config.compact {
            do {
                if try log.compact(nowMs: now) != nil { cleaned += 1 }
            } catch {
                logger.error("compaction failed", metadata: ["topic": "\(log.topic)", "partition": "\(log.partition)",
                                                             "error": "\(error)"])
            }
        }
        return cleaned
    }

    /// Logs whose `flush.ms` has elapsed.
    public func logsDueForTimeFlush() -> [PartitionLog] {
        let now = clock()
        return allLogs.filter { $0.timeFlushDue(nowMs: now) }
    }

    public func closeAll() {
        let partitions = allPartitions
        for p in partitions { p.closeWaiters() }
        for p in partitions { p.log.close() }
        do { try writeRecoveryPoints() } catch {
            logger.warning("could not write the recovery points", metadata: ["error": "\(error)"])
        }
    }
}

extension KafkaUUID {
    /// 32 lowercase hex digits.
    var hexString: String {
        let h = String(high, radix: 16), l = String(low, radix: 16)
        return String(repeating: "0", count: 16 - h.count) + h + String(repeating: "0", count: 16 - l.count) + l
    }
}

/// Milliseconds since the Unix epoch.
public func currentTimeMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
