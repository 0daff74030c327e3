import ClusterMetadata
import Foundation
import KafkaProtocol
import Logging
import LogStorage
import NIOConcurrencyHelpers

/// The topics this broker hosts and their partition logs.
///
/// Topic records live in the ``MetadataStore``; logs live in `<dataDir>/<topic>-<n>/`. Lookups on the
/// produce/fetch path take the lock only to read a dictionary. Creation writes the metadata first and
/// then the directories, deletion the reverse, so a crash in between leaves a state that startup
/// repairs (stray directories of unknown topics are removed, missing ones created).
public final class LogManager: @unchecked Sendable {
    public struct Topic: Sendable {
        public var record: TopicRecord
        public var name: TopicName { TopicName(record.name) }
        public var logs: [PartitionLog]
        public var topicID: KafkaUUID
    }

    public let dataDirectory: String
    private let store: MetadataStore
    private let logger: Logger
    private let lock = NIOLock()
    private var topics: [TopicName: Topic] = [:]
    private var brokerDefaults: [String: String]
    private let clock: @Sendable () -> Int64

    public init(dataDirectory: String, store: MetadataStore, brokerDefaults: [String: String], logger: Logger,
                clock: @escaping @Sendable () -> Int64 = { currentTimeMillis() }) throws {
        self.dataDirectory = dataDirectory
        self.store = store
        self.logger = logger
        self.brokerDefaults = brokerDefaults
        self.clock = clock
        let records = try store.loadTopics()
        let started = clock()
        var known = Set<String>()
        for r in records {
            let t = try openTopic(r)
            topics[t.name] = t
            for p in 0..<r.partitions { known.insert(PartitionLog.directoryName(topic: t.name, partition: p)) }
        }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dataDirectory)) ?? [] {
            var isDir: ObjCBool = false
            let path = "\(dataDirectory)/\(name)"
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue,
                  PartitionLog.parseDirectoryName(name) != nil, !known.contains(name) else { continue }
            logger.warning("removing the log directory of a deleted topic", metadata: ["directory": "\(path)"])
            try? FileManager.default.removeItem(atPath: path)
        }
        if !records.isEmpty {
            logger.info("loaded topics", metadata: ["topics": "\(records.count)",
                                                    "partitions": "\(records.reduce(0) { $0 + Int($1.partitions) })",
                                                    "ms": "\(clock() - started)"])
        }
    }

    private func openTopic(_ r: TopicRecord) throws -> Topic {
        let name = TopicName(r.name)
        var logs: [PartitionLog] = []
        for p in 0..<r.partitions {
            logs.append(try openLog(name, p, r.configs))
        }
        return Topic(record: r, logs: logs, topicID: Self.parseUUID(r.topicID))
    }

    private func openLog(_ name: TopicName, _ p: Int32, _ configs: [String: String]) throws -> PartitionLog {
        try PartitionLog.open(directory: "\(dataDirectory)/\(PartitionLog.directoryName(topic: name, partition: p))",
                              topic: name, partition: p,
                              config: LogConfig(overrides: configs, brokerDefaults: brokerDefaults),
                              nowMs: clock(), logger: logger)
    }

    static func parseUUID(_ s: String) -> KafkaUUID {
        let hex = s.replacingOccurrences(of: "-", with: "")
        guard hex.count == 32, let hi = UInt64(hex.prefix(16), radix: 16), let lo = UInt64(hex.suffix(16), radix: 16) else {
            return .zero
        }
        return KafkaUUID(high: hi, low: lo)
    }

    // MARK: Lookups

    public func topic(_ name: TopicName) -> Topic? {
        lock.withLock { topics[name] }
    }

    public func log(_ name: TopicName, _ partition: Int32) -> PartitionLog? {
        lock.withLock {
            guard let t = topics[name], partition >= 0, Int(partition) < t.logs.count else { return nil }
            return t.logs[Int(partition)]
        }
    }

    public var allTopics: [Topic] {
        lock.withLock { Array(topics.values) }.sorted { $0.record.name < $1.record.name }
    }

    public var allLogs: [PartitionLog] {
        lock.withLock { topics.values.flatMap(\.logs) }
    }

    // MARK: Changes

    /// Creates a topic. With `validateOnly`, checks everything and changes nothing.
    @discardableResult
    public func createTopic(_ name: TopicName, partitions: Int32, replicationFactor: Int16, configs: [String: String],
                            validateOnly: Bool = false, isInternal: Bool = false) throws -> TopicRecord {
        if let why = name.validationError { throw BrokerError(.invalidTopicException, why) }
        if name.rawValue == "__consumer_offsets" && !isInternal {
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
        return try lock.withLock {
            if topics[name] != nil { throw BrokerError(.topicAlreadyExists, "topic '\(name)' already exists") }
            if validateOnly { return record }
            var all = topics.values.map(\.record)
            all.append(record)
            try store.saveTopics(all)
            topics[name] = try openTopic(record)
            logger.info("created topic", metadata: ["topic": "\(name)", "partitions": "\(partitions)",
                                                    "configs": "\(configs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))"])
            return record
        }
    }

    public func deleteTopic(_ name: TopicName) throws -> KafkaUUID {
        let removed: Topic = try lock.withLock {
            guard let t = topics[name] else { throw BrokerError.unknownTopic(name) }
            if t.record.isInternal { throw BrokerError(.topicDeletionDisabled, "internal topic '\(name)' cannot be deleted") }
            try store.saveTopics(topics.values.filter { $0.name != name }.map(\.record))
            topics[name] = nil
            return t
        }
        for log in removed.logs { log.delete() }
        logger.info("deleted topic", metadata: ["topic": "\(name)"])
        return removed.topicID
    }

    public func createPartitions(_ name: TopicName, count: Int32, validateOnly: Bool) throws {
        try lock.withLock {
            guard var t = topics[name] else { throw BrokerError.unknownTopic(name) }
            guard count > t.record.partitions else {
                throw BrokerError(.invalidPartitions,
                                  "topic '\(name)' already has \(t.record.partitions) partitions; the new count must be larger, got \(count)")
            }
            guard count <= 100_000 else { throw BrokerError(.invalidPartitions, "\(count) partitions is too many") }
            if validateOnly { return }
            var record = t.record
            record.partitions = count
            try store.saveTopics(topics.values.filter { $0.name != name }.map(\.record) + [record])
            for p in t.record.partitions..<count { t.logs.append(try openLog(name, p, record.configs)) }
            t.record = record
            topics[name] = t
            logger.info("added partitions", metadata: ["topic": "\(name)", "partitions": "\(count)"])
        }
    }

    /// Replaces a topic's config overrides (after validation) and applies them to its live logs.
    public func setConfigs(_ name: TopicName, _ configs: [String: String], validateOnly: Bool) throws {
        for (k, v) in configs {
            if let why = LogConfig.validate(k, v) { throw BrokerError(.invalidConfig, why) }
        }
        try lock.withLock {
            guard var t = topics[name] else { throw BrokerError.unknownTopic(name) }
            if validateOnly { return }
            t.record.configs = configs
            try store.saveTopics(topics.values.filter { $0.name != name }.map(\.record) + [t.record])
            topics[name] = t
            for log in t.logs {
                log.config = LogConfig(overrides: configs, brokerDefaults: brokerDefaults)
            }
        }
        logger.info("changed topic configs", metadata: ["topic": "\(name)"])
    }

    /// The effective config of a topic.
    public func config(_ name: TopicName) -> LogConfig? {
        lock.withLock { topics[name].map { LogConfig(overrides: $0.record.configs, brokerDefaults: brokerDefaults) } }
    }

    // MARK: Housekeeping

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
        for log in allLogs { log.close() }
    }
}

/// Milliseconds since the Unix epoch.
public func currentTimeMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
