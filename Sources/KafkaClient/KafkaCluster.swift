import Foundation
import KafkaProtocol
import KafkaWire
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Connections to the brokers of one cluster and a cache of its metadata.
///
/// Starts from a bootstrap list, learns brokers, partition leaders and coordinators from Metadata
/// and FindCoordinator, and keeps pipelined connections per broker and ``TrafficClass``,
/// reconnecting on demand after a connection is lost: a Fetch parked in a long poll never holds up
/// a produce, an offset lookup or a heartbeat, because a broker answers a connection's requests in
/// order. Only standard Kafka requests are used, so the same code talks to Meridian and to Apache
/// Kafka. Thread-safe: state is guarded by a lock; network waits happen outside it.
public final class KafkaCluster: @unchecked Sendable {
    public struct Options: Sendable {
        public var clientID = "meridian"
        public var tls: TLSSettings? = nil
        public var requestTimeout: TimeAmount = .seconds(30)
        public var connectTimeout: TimeAmount = .seconds(10)
        /// How long operations keep retrying after connection loss or retriable broker errors.
        public var retryTimeout: Duration = .seconds(30)
        /// First pause between retries; doubles up to one second.
        public var retryBackoff: Duration = .milliseconds(50)
        /// Cached topic metadata older than this is fetched again (`metadata.max.age.ms`).
        public var metadataMaxAge: Duration = .seconds(300)
        /// Brokers reached through another address (`"host:port"` → the address to connect to): a
        /// tunnel, a NAT, or `meridian up`'s simulated WAN link. Applies to bootstrap addresses and
        /// to the addresses metadata advertises; TLS still verifies the broker's own name.
        public var routes: [String: BootstrapAddress] = [:]
        /// Told about brokers that cannot be reached (the first failed attempt at once, then again
        /// every `connectFailureReportInterval` while it lasts) and about reaching one again, so a
        /// command can say so within seconds instead of staying silent for its whole retry timeout.
        /// Called without the cluster's lock, from the task that tried.
        public var onConnectionEvent: (@Sendable (ConnectionEvent) -> Void)? = nil
        public var connectFailureReportInterval: Duration = .seconds(10)
        /// A connect still under way after this long is reported as slow (once per attempt); the
        /// attempt itself goes on until `connectTimeout`.
        public var slowConnectNotice: Duration = .seconds(2)
        public init() {}
    }

    /// What ``Options/onConnectionEvent`` hears.
    public enum ConnectionEvent: Sendable, Equatable {
        /// An attempt to connect to `address` failed for `reason`; the operation that tried keeps
        /// trying until `retryingUntil` (nil: it does not retry).
        case failed(address: String, reason: String, retryingUntil: ContinuousClock.Instant?)
        /// A connect to `address` has had no answer for `waited` and goes on.
        case slow(address: String, waited: Duration, retryingUntil: ContinuousClock.Instant?)
        /// `address` answered again after failing for `after`.
        case recovered(address: String, after: Duration)
    }

    /// The deadline of the outermost ``retrying(_:)`` running in this task: nested retries (an
    /// operation that retries calls another that retries) share it instead of each taking a full
    /// `retryTimeout`, so a command gives up when its timeout says.
    @TaskLocal static var retryDeadline: ContinuousClock.Instant?

    public struct BrokerInfo: Sendable, Equatable {
        public var id: BrokerID
        public var host: String
        public var port: Int
        public var rack: String?
    }

    public struct PartitionInfo: Sendable, Equatable {
        public var partition: Int32
        public var leader: BrokerID
        public var leaderEpoch: Int32
        public var replicas: [BrokerID]
        public var isr: [BrokerID]
        public var error: ErrorCode
    }

    public struct TopicInfo: Sendable, Equatable {
        public var name: TopicName
        public var topicID: KafkaUUID
        public var isInternal: Bool
        public var partitions: [PartitionInfo]
        public var error: ErrorCode
    }

    /// Which connection to a broker a request uses (the Java client separates group traffic the
    /// same way; we also separate fetches from produces from everything else).
    public enum TrafficClass: String, Sendable, CaseIterable {
        /// Fetch requests, which the broker may hold for `fetch.max.wait.ms`.
        case fetch
        /// Produce requests.
        case produce
        /// Metadata, ListOffsets, InitProducerId, topic and config administration.
        case admin
        /// Group coordination: JoinGroup (held for a whole rebalance), SyncGroup, heartbeats, commits.
        case coordinator
    }

    private struct ConnectionKey: Hashable {
        var broker: BrokerID
        var traffic: TrafficClass
        var index = 0
    }

    public let bootstrap: [BootstrapAddress]
    public let options: Options
    public let group: EventLoopGroup
    private let lock = NIOLock()
    private var brokers: [BrokerID: BrokerInfo] = [:]
    private var connections: [ConnectionKey: KafkaConnection] = [:]
    /// The admin connection opened from the bootstrap list (its broker id is not known yet).
    private var bootstrapConnection: KafkaConnection?
    private var topics: [TopicName: TopicInfo] = [:]
    private var fetchedAt: [TopicName: ContinuousClock.Instant] = [:]
    private var _clusterID: String?
    private var _controller: BrokerID = .none
    private var failures = ConnectFailures()
    private var closed = false

    public init(bootstrap: [BootstrapAddress], options: Options = Options(), group: EventLoopGroup) {
        self.bootstrap = bootstrap
        self.options = options
        self.group = group
    }

    public var clusterID: String? { lock.withLock { _clusterID } }
    public var controller: BrokerID { lock.withLock { _controller } }
    public var knownBrokers: [BrokerInfo] { lock.withLock { brokers.values.sorted { $0.id < $1.id } } }

    private func connect(_ host: String, _ port: Int) async throws -> KafkaConnection {
        // After close nothing new is opened: the caller may be shutting the event loops down, and a
        // task of a client still at work (a consumer's prefetch, a heartbeat) that connected then
        // would register a channel on a loop that is gone (a crash of `meridian lag report`).
        if lock.withLock({ closed }) { throw KafkaClientError.closed("cluster") }
        let via = options.routes["\(host):\(port)"].map { (host: $0.host, port: $0.port) }
        let address = "\(host):\(port)"
        // Said while the attempt goes on, so a black-holed address is reported within seconds.
        let until = Self.retryDeadline
        let notice: Task<Void, Never>? = options.onConnectionEvent.map { report in
            let after = options.slowConnectNotice, every = options.connectFailureReportInterval
            return Task { [weak self] in
                guard (try? await Task.sleep(for: after)) != nil,
                      self?.lock.withLock({ self?.failures.slow(address, now: .now, every: every) }) == true else { return }
                report(.slow(address: address, waited: after, retryingUntil: until))
            }
        }
        defer { notice?.cancel() }
        // An attempt ends by the deadline of the operation that makes it.
        var timeout = options.connectTimeout
        if let until {
            let left = max(.milliseconds(100), until - .now)
            timeout = min(timeout, .nanoseconds(Int64(left / .nanoseconds(1))))
        }
        do {
            let c = try await KafkaConnection.connect(host: host, port: port, via: via, tls: options.tls, group: group, clientID: options.clientID,
                                                      requestTimeout: options.requestTimeout, connectTimeout: timeout)
            if lock.withLock({ closed }) {
                await c.close()
                throw KafkaClientError.closed("cluster")
            }
            if let report = options.onConnectionEvent, let down = lock.withLock({ failures.succeeded(address, now: .now) }) {
                report(.recovered(address: address, after: down))
            }
            return c
        } catch let e as KafkaConnectionError {
            if let report = options.onConnectionEvent,
               lock.withLock({ failures.failed(address, now: .now, every: options.connectFailureReportInterval) }) {
                let reason: String
                if case .connectFailed(_, _, let why) = e { reason = why } else { reason = e.description }
                report(.failed(address: address, reason: reason, retryingUntil: until))
            }
            throw e
        }
    }

    /// Whether an error is worth retrying; see ``KafkaClientError/isRetriable(_:)``.
    public static func isRetriable(_ error: Error) -> Bool { KafkaClientError.isRetriable(error) }

    /// Runs `body`, retrying retriable failures with exponential backoff until `retryTimeout`.
    /// Inside another `retrying` of the same task, the outer deadline holds.
    public func retrying<T>(_ body: () async throws -> T) async throws -> T {
        let own = ContinuousClock.now + options.retryTimeout
        let deadline = Self.retryDeadline.map { min($0, own) } ?? own
        return try await Self.$retryDeadline.withValue(deadline) {
            var backoff = options.retryBackoff
            while true {
                do {
                    return try await body()
                } catch {
                    guard Self.isRetriable(error), ContinuousClock.now + backoff < deadline else { throw error }
                    try await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .seconds(1))
                }
            }
        }
    }

    /// A live admin connection to any broker: a known one first, else the bootstrap list in order,
    /// retried with backoff while no broker answers (up to `retryTimeout`).
    public func anyConnection() async throws -> KafkaConnection {
        try await retrying { try await anyConnectionOnce() }
    }

    private func anyConnectionOnce() async throws -> KafkaConnection {
        let existing: KafkaConnection? = lock.withLock {
            let admin = connections.filter { $0.key.traffic == .admin }.sorted { $0.key.broker < $1.key.broker }.map(\.value)
            return (admin + [bootstrapConnection].compactMap { $0 }).first { $0.channel.isActive }
        }
        if let existing { return existing }
        var failures: [KafkaClientError.BootstrapFailure] = []
        for b in bootstrap {
            do {
                let c = try await connect(b.host, b.port)
                lock.withLock { bootstrapConnection = c }
                return c
            } catch let e as KafkaConnectionError {
                failures.append(.init(address: b.description, error: e))
            }
        }
        throw KafkaClientError.unreachable(failures)
    }

    /// The connection of class `traffic` to broker `id`, opened if needed (metadata must know the broker).
    /// `index` picks one of several connections of that class, for requests that should not queue
    /// behind each other (a broker answers a connection's requests in order).
    public func connection(to id: BrokerID, for traffic: TrafficClass = .admin, index: Int = 0) async throws -> KafkaConnection {
        let key = ConnectionKey(broker: id, traffic: traffic, index: index)
        if let c = lock.withLock({ connections[key] }), c.channel.isActive { return c }
        var info = lock.withLock { brokers[id] }
        if info == nil {
            _ = try await refreshMetadata(topics: [])
            info = lock.withLock { brokers[id] }
        }
        guard let info else { throw KafkaClientError.invalidArgument("broker \(id) is not in the cluster metadata") }
        return try await open(key, host: info.host, port: info.port)
    }

    /// Connects for `key`; if another caller connected meanwhile, keeps theirs and closes ours.
    private func open(_ key: ConnectionKey, host: String, port: Int) async throws -> KafkaConnection {
        let c = try await retrying { try await connect(host, port) }
        let (use, extra): (KafkaConnection, KafkaConnection?) = lock.withLock {
            if let existing = connections[key], existing.channel.isActive { return (existing, c) }
            let old = connections[key]
            connections[key] = c
            return (c, old)
        }
        if let extra { await extra.close() }
        return use
    }

    /// Fetches metadata for `topics` (nil: every topic) and updates the cache.
    @discardableResult
    public func refreshMetadata(topics wanted: [TopicName]?, allowAutoCreate: Bool = false) async throws -> [TopicInfo] {
        var req = MetadataRequest()
        req.topics = wanted.map { $0.map { .init(name: $0) } }
        req.allowAutoTopicCreation = allowAutoCreate
        // A connection that drops under the request is replaced and the request asked again, as
        // for connecting: a producer's send must not fail because a metadata answer was cut.
        let resp = try await retrying {
            let conn = try await anyConnectionOnce()
            return try await conn.send(req, version: try conn.version(for: MetadataRequest.self, max: 12))
        }
        let infos: [TopicInfo] = resp.topics.compactMap { t in
            guard let name = t.name else { return nil }
            return TopicInfo(name: name, topicID: t.topicID, isInternal: t.isInternal, partitions: t.partitions.map {
                PartitionInfo(partition: $0.partitionIndex, leader: $0.leaderID, leaderEpoch: $0.leaderEpoch,
                              replicas: $0.replicaNodes, isr: $0.isrNodes, error: $0.errorCode)
            }.sorted { $0.partition < $1.partition }, error: t.errorCode)
        }
        lock.withLock {
            for b in resp.brokers { brokers[b.nodeID] = BrokerInfo(id: b.nodeID, host: b.host, port: Int(b.port), rack: b.rack) }
            _clusterID = resp.clusterID
            _controller = resp.controllerID
            let now = ContinuousClock.now
            for t in infos where t.error == .none { topics[t.name] = t; fetchedAt[t.name] = now }
            for t in infos where t.error == .unknownTopicOrPartition { topics[t.name] = nil }
        }
        return infos
    }

    /// Cached metadata for a topic, fetched when missing. `allowAutoCreate` lets a broker with
    /// auto-creation on create the topic (what producers ask for).
    public func topic(_ name: TopicName, allowAutoCreate: Bool = false) async throws -> TopicInfo {
        let maxAge = options.metadataMaxAge
        if let t = lock.withLock({ fetchedAt[name].map { ContinuousClock.now - $0 < maxAge } == true ? topics[name] : nil }) { return t }
        let infos = try await refreshMetadata(topics: [name], allowAutoCreate: allowAutoCreate)
        guard let t = infos.first(where: { $0.name == name }) else { throw KafkaClientError.unknownTopic(name) }
        guard t.error == .none else {
            if t.error == .unknownTopicOrPartition { throw KafkaClientError.unknownTopic(name) }
            throw KafkaClientError.broker(t.error, "metadata of topic \(name)")
        }
        return t
    }

    /// Forgets cached partition leaders (after NOT_LEADER_OR_FOLLOWER and similar errors).
    public func invalidate(_ name: TopicName) {
        lock.withLock { _ = topics.removeValue(forKey: name) }
    }

    /// Connection of class `traffic` (the `index`th of that class) to the leader of a partition.
    public func leader(_ name: TopicName, _ partition: Int32, for traffic: TrafficClass = .admin, index: Int = 0) async throws -> KafkaConnection {
        let t = try await topic(name)
        guard let p = t.partitions.first(where: { $0.partition == partition }) else {
            throw KafkaClientError.invalidArgument("topic \(name) has no partition \(partition) (it has \(t.partitions.count))")
        }
        guard p.leader.rawValue >= 0 else { throw KafkaClientError.broker(.leaderNotAvailable, "partition \(name)-\(partition)") }
        return try await connection(to: p.leader, for: traffic, index: index)
    }

    /// The coordinator connection to the coordinator of a consumer group.
    public func coordinator(for group: GroupID) async throws -> KafkaConnection {
        let conn = try await anyConnection()
        var req = FindCoordinatorRequest()
        req.keyType = 0
        let v = try conn.version(for: FindCoordinatorRequest.self, max: 4)
        if v >= 4 { req.coordinatorKeys = [group.rawValue] } else { req.key = group.rawValue }
        let resp = try await conn.send(req, version: v)
        let (code, node, host, port): (ErrorCode, BrokerID, String, Int32) = v >= 4
            ? (resp.coordinators.first?.errorCode ?? .coordinatorNotAvailable, resp.coordinators.first?.nodeID ?? -1,
               resp.coordinators.first?.host ?? "", resp.coordinators.first?.port ?? -1)
            : (resp.errorCode, resp.nodeID, resp.host, resp.port)
        guard code == .none else { throw KafkaClientError.broker(code, "FindCoordinator for group \(group)") }
        lock.withLock {
            if brokers[node] == nil { brokers[node] = BrokerInfo(id: node, host: host, port: Int(port), rack: nil) }
        }
        let key = ConnectionKey(broker: node, traffic: .coordinator)
        if let c = lock.withLock({ connections[key] }), c.channel.isActive { return c }
        return try await open(key, host: host, port: Int(port))
    }

    public func close() async {
        let all: [KafkaConnection] = lock.withLock {
            closed = true
            let a = Array(connections.values) + [bootstrapConnection].compactMap { $0 }
            connections.removeAll()
            bootstrapConnection = nil
            return a
        }
        for c in all { await c.close() }
    }
}
