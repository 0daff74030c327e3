import KafkaWire

/// Everything a broker process is started with.
public struct BrokerConfig: Sendable {
    public var brokerID: Int32 = 0
    public var dataDirectory: String
    public var listeners: [ListenerAddress]
    /// Addresses given to clients in Metadata, one per listener (defaults to the bound address).
    public var advertisedListeners: [ListenerAddress]? = nil
    public var tls: TLSSettings? = nil
    public var autoCreateTopics = true
    public var defaultPartitions: Int32 = 1
    /// Largest request frame accepted (`socket.request.max.bytes`).
    public var maxRequestBytes = 100 * 1024 * 1024
    /// Broker-wide defaults for topic configs (`log.retention.ms` style settings given per topic key).
    public var topicConfigDefaults: [String: String] = [:]
    /// fsync before acknowledging acks=-1 produces (the single-node durability guarantee).
    public var fsyncOnAcksAll = true
    /// How often retention and time-based flushes run (`log.retention.check.interval.ms`).
    public var retentionCheckIntervalMs: Int64 = 300_000
    /// How often the log cleaner looks for compacted topics to clean (`log.cleaner.backoff.ms`).
    public var logCleanerBackoffMs: Int64 = 15_000
    /// Requests a connection may have in flight before the broker stops reading from it.
    public var maxInFlightPerConnection = 64
    /// Rack reported in Metadata, if any.
    public var rack: String? = nil
    /// Consumer-group and committed-offset settings (`group.*`, `offsets.*`).
    public var groups = GroupCoordinator.Settings()
    /// Event-loop threads; defaults to the number of cores.
    public var threads: Int = System.coreCount

    public init(dataDirectory: String, listeners: [ListenerAddress]) {
        self.dataDirectory = dataDirectory
        self.listeners = listeners
    }
}

import NIOCore
