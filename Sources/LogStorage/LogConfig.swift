import Foundation
import KafkaProtocol

/// Per-topic log settings, with Kafka's names, types and defaults.
///
/// A topic stores only the keys that were set explicitly (``overrides``); everything else falls back
/// to the broker default, then to Kafka's default. ``LogConfig/definitions`` is the single table
/// DescribeConfigs, IncrementalAlterConfigs and CreateTopics validate against.
public struct LogConfig: Sendable, Equatable {
    public enum ValueType: Sendable {
        case long(min: Int64)
        case int(min: Int64)
        case double(min: Double, max: Double)
        case choice([String])
        case list([String])
        case boolean
        case string
    }

    public struct Definition: Sendable {
        public var name: String
        public var type: ValueType
        public var defaultValue: String
        /// DescribeConfigs `config_type`: 1 boolean, 2 string, 3 int, 4 short, 5 long, 6 double, 7 list.
        public var wireType: Int8
        public var documentation: String
    }

    public static let definitions: [Definition] = [
        .init(name: "cleanup.policy", type: .list(["delete", "compact"]), defaultValue: "delete", wireType: 7,
              documentation: "delete: drop old segments by retention; compact: keep the latest record per key"),
        .init(name: "compression.type", type: .choice(["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
              defaultValue: "producer", wireType: 2, documentation: "stored batches keep the producer's codec"),
        .init(name: "delete.retention.ms", type: .long(min: 0), defaultValue: "86400000", wireType: 5,
              documentation: "how long tombstones survive compaction"),
        .init(name: "flush.messages", type: .long(min: 1), defaultValue: "9223372036854775807", wireType: 5,
              documentation: "fsync after this many messages (acks=-1 on a single node always fsyncs)"),
        .init(name: "flush.ms", type: .long(min: 0), defaultValue: "9223372036854775807", wireType: 5,
              documentation: "fsync when the oldest unflushed message is this old"),
        .init(name: "index.interval.bytes", type: .int(min: 0), defaultValue: "4096", wireType: 3,
              documentation: "bytes of log between two offset-index entries"),
        .init(name: "max.message.bytes", type: .int(min: 0), defaultValue: "1048588", wireType: 3,
              documentation: "largest record batch accepted, in bytes"),
        .init(name: "message.timestamp.after.max.ms", type: .long(min: 0), defaultValue: "3600000", wireType: 5,
              documentation: "how far ahead of the broker's clock a CreateTime record may be (Kafka 4 default: one hour)"),
        .init(name: "message.timestamp.before.max.ms", type: .long(min: 0), defaultValue: "9223372036854775807", wireType: 5,
              documentation: "how far behind the broker's clock a CreateTime record may be"),
        .init(name: "message.timestamp.type", type: .choice(["CreateTime", "LogAppendTime"]), defaultValue: "CreateTime",
              wireType: 2, documentation: "whose clock stamps records"),
        .init(name: "min.cleanable.dirty.ratio", type: .double(min: 0, max: 1), defaultValue: "0.5", wireType: 6,
              documentation: "share of uncompacted log that triggers the cleaner"),
        .init(name: "min.compaction.lag.ms", type: .long(min: 0), defaultValue: "0", wireType: 5,
              documentation: "records younger than this are never compacted"),
        .init(name: "min.insync.replicas", type: .int(min: 1), defaultValue: "1", wireType: 3,
              documentation: "replicas that must have an acks=all write"),
        .init(name: "retention.bytes", type: .long(min: -1), defaultValue: "-1", wireType: 5,
              documentation: "size limit per partition before old segments go; -1 means none"),
        .init(name: "retention.ms", type: .long(min: -1), defaultValue: "604800000", wireType: 5,
              documentation: "age limit before old segments go; -1 means forever"),
        .init(name: "segment.bytes", type: .int(min: 1024), defaultValue: "1073741824", wireType: 3,
              documentation: "size at which a new segment file starts"),
        .init(name: "segment.ms", type: .long(min: 1), defaultValue: "604800000", wireType: 5,
              documentation: "age at which a new segment file starts"),
        .init(name: "unclean.leader.election.enable", type: .boolean, defaultValue: "false", wireType: 1,
              documentation: "allow an out-of-sync replica to become leader"),
    ]

    public static func definition(_ name: String) -> Definition? {
        definitions.first { $0.name == name }
    }

    /// Settings given explicitly for this topic.
    public private(set) var overrides: [String: String]
    /// Broker-level defaults (from the command line or topology) that apply when the topic sets nothing.
    public private(set) var brokerDefaults: [String: String]

    public init(overrides: [String: String] = [:], brokerDefaults: [String: String] = [:]) {
        self.overrides = overrides
        self.brokerDefaults = brokerDefaults
        segmentBytes = 0; segmentMs = 0; retentionMs = 0; retentionBytes = 0; flushMessages = 0; flushMs = 0
        indexIntervalBytes = 0; maxMessageBytes = 0; logAppendTime = false; compact = false; delete = true
        deleteRetentionMs = 0; minCleanableDirtyRatio = 0.5; minCompactionLagMs = 0; minInsyncReplicas = 1
        timestampBeforeMaxMs = 0; timestampAfterMaxMs = 0
        resolve()
    }

    /// The value in force and where it comes from.
    public func value(_ name: String) -> (value: String, source: Source)? {
        if let v = overrides[name] { return (v, .topic) }
        if let v = brokerDefaults[name] { return (v, .broker) }
        return LogConfig.definition(name).map { ($0.defaultValue, .default) }
    }

    public enum Source: Sendable { case topic, broker, `default` }

    /// Checks a proposed value; returns a message for the client when it is not acceptable.
    public static func validate(_ name: String, _ value: String) -> String? {
        guard let d = definition(name) else { return "unknown topic config '\(name)'" }
        switch d.type {
        case .long(let min), .int(let min):
            guard let v = Int64(value) else { return "\(name) must be an integer, got '\(value)'" }
            if v < min { return "\(name) must be at least \(min), got \(v)" }
            if case .int = d.type, v > Int64(Int32.max) { return "\(name) must fit in 32 bits, got \(v)" }
        case .double(let lo, let hi):
            guard let v = Double(value), v >= lo, v <= hi else { return "\(name) must be a number in [\(lo), \(hi)]" }
        case .choice(let options):
            if !options.contains(value) { return "\(name) must be one of \(options.joined(separator: ", ")), got '\(value)'" }
        case .list(let options):
            let parts = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.isEmpty || parts.contains(where: { !options.contains($0) }) {
                return "\(name) must be a comma-separated list of \(options.joined(separator: ", ")), got '\(value)'"
            }
        case .boolean:
            if value != "true" && value != "false" { return "\(name) must be true or false" }
        case .string:
            break
        }
        return nil
    }

    public mutating func set(_ name: String, _ value: String?) {
        overrides[name] = value
        resolve()
    }

    public mutating func setBrokerDefaults(_ defaults: [String: String]) {
        brokerDefaults = defaults
        resolve()
    }

    // Resolved values, recomputed whenever a setting changes.
    public private(set) var segmentBytes: Int64
    public private(set) var segmentMs: Int64
    public private(set) var retentionMs: Int64
    public private(set) var retentionBytes: Int64
    public private(set) var flushMessages: Int64
    public private(set) var flushMs: Int64
    public private(set) var indexIntervalBytes: Int64
    public private(set) var maxMessageBytes: Int64
    public private(set) var logAppendTime: Bool
    public private(set) var compact: Bool
    public private(set) var delete: Bool
    public private(set) var deleteRetentionMs: Int64
    public private(set) var minCleanableDirtyRatio: Double
    public private(set) var minCompactionLagMs: Int64
    public private(set) var minInsyncReplicas: Int64
    public private(set) var timestampBeforeMaxMs: Int64
    public private(set) var timestampAfterMaxMs: Int64

    /// What produced batches must satisfy at broker time `nowMs`.
    public func validationRules(nowMs: Int64) -> RecordValidationRules {
        RecordValidationRules(
            timestamps: logAppendTime ? nil : RecordValidationRules.timestampWindow(
                nowMs: nowMs, beforeMaxMs: timestampBeforeMaxMs, afterMaxMs: timestampAfterMaxMs),
            requireKeys: compact)
    }

    private mutating func resolve() {
        func long(_ n: String) -> Int64 { Int64(value(n)!.value) ?? Int64(LogConfig.definition(n)!.defaultValue)! }
        segmentBytes = long("segment.bytes")
        segmentMs = long("segment.ms")
        retentionMs = long("retention.ms")
        retentionBytes = long("retention.bytes")
        flushMessages = long("flush.messages")
        flushMs = long("flush.ms")
        indexIntervalBytes = long("index.interval.bytes")
        maxMessageBytes = long("max.message.bytes")
        logAppendTime = value("message.timestamp.type")!.value == "LogAppendTime"
        let policy = value("cleanup.policy")!.value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        compact = policy.contains("compact")
        delete = policy.contains("delete")
        deleteRetentionMs = long("delete.retention.ms")
        minCleanableDirtyRatio = Double(value("min.cleanable.dirty.ratio")!.value) ?? 0.5
        minCompactionLagMs = long("min.compaction.lag.ms")
        minInsyncReplicas = long("min.insync.replicas")
        timestampBeforeMaxMs = long("message.timestamp.before.max.ms")
        timestampAfterMaxMs = long("message.timestamp.after.max.ms")
    }
}

/// Milliseconds from `since` to `now`, saturating instead of trapping: stored timestamps come from
/// producers and may sit anywhere in `Int64`, and an age is only ever compared with a limit.
@inlinable
public func elapsedMs(since: Int64, now: Int64) -> Int64 {
    let (d, overflow) = now.subtractingReportingOverflow(since)
    return overflow ? (since < 0 ? Int64.max : Int64.min) : d
}
