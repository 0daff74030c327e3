import Foundation
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
    /// fsync before acknowledging acks=-1 produces, and serve consumers only what is durable (the
    /// high watermark is the last fsynced offset). Off: the high watermark follows the log end and
    /// acks=-1 means written to the page cache.
    public var fsyncOnAcksAll = true
    /// Idempotent-producer state of a producer idle this long is dropped (`producer.id.expiration.ms`).
    public var producerIDExpirationMs: Int64 = 86_400_000
    /// Producer ids whose last granted epoch InitProducerId remembers (for KIP-360 epoch bumps).
    public var producerIDExpirationTracking = 100_000
    /// Largest Fetch response, whatever the request asks (`fetch.max.bytes`).
    public var fetchMaxBytes = 55 * 1024 * 1024
    /// Connections accepted at once, all listeners together (`max.connections`); beyond it new
    /// connections are closed at once. Default: what the process's file-descriptor limit leaves
    /// after room for log files.
    public var maxConnections = BrokerConfig.defaultMaxConnections
    /// Connections from one IP address (`max.connections.per.ip`; unbounded by default as in Kafka).
    public var maxConnectionsPerIP = Int.max
    /// A connection with no request for this long is closed (`connections.max.idle.ms`).
    public var connectionsMaxIdleMs: Int64 = 600_000
    /// A TLS connection that has not finished its handshake by then is closed.
    public var tlsHandshakeTimeoutMs: Int64 = 10_000
    /// Bytes of requests and responses one connection may hold in the broker before it stops
    /// reading from that connection (requests beyond it wait in the client's socket).
    public var maxBufferedBytesPerConnection = 16 * 1024 * 1024
    /// Bytes of requests being received or queued across all connections (`queued.max.request.bytes`,
    /// unbounded in Kafka by default, bounded here): a connection announcing a request that does
    /// not fit waits, unread, until memory frees up.
    public var queuedMaxRequestBytes = 256 * 1024 * 1024
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

    /// File descriptors left for connections: the soft `RLIMIT_NOFILE` minus a quarter (at least
    /// 1024) kept for segment files and the rest of the process.
    public static var defaultMaxConnections: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int32.max) else { return 60_000 }
        let total = Int(clamping: limit.rlim_cur)
        return max(64, total - max(1024, total / 4))
    }

    public init(dataDirectory: String, listeners: [ListenerAddress]) {
        self.dataDirectory = dataDirectory
        self.listeners = listeners
    }
}

import NIOCore
