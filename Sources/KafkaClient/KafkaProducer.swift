import Foundation
import KafkaProtocol
import KafkaWire
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A Kafka producer: batches records per partition, sends them to partition leaders, retries
/// without duplicates or reordering (idempotence on by default).
///
/// The decisions are ``ProducerAccumulator``'s; this class is its I/O shell (see the module
/// comment in `KafkaClient.swift`): the accumulator and the shell's own bookkeeping sit behind one
/// lock, records are appended on the caller's thread (no task or hop per record), requests go out
/// and answers come back on one event loop, and waiting callers are resumed outside the lock.
/// Memory is bounded by `bufferMemory`: `send` and `enqueue` wait when it is used up.
public final class KafkaProducer: @unchecked Sendable {
    public typealias Completion = @Sendable (Result<RecordMetadata, Error>) -> Void

    public let cluster: KafkaCluster
    public let config: ProducerConfig
    private let loop: EventLoop
    private let logger: Logger
    /// Milliseconds since the epoch; injectable so tests control linger and timeouts.
    private let now: @Sendable () -> Int64

    private let lock = NIOLock()
    private var acc: ProducerAccumulator
    private var connections: [BrokerID: KafkaConnection] = [:]
    private var connecting = Set<BrokerID>()
    private var refreshing = Set<TopicName>()
    private var initializing = false
    private var memoryWaiters: [CheckedContinuation<Void, Never>] = []
    private var flushWaiters: [CheckedContinuation<Void, Never>] = []
    private var drainScheduled = false
    private var lingerTimer: Scheduled<Void>?
    private var lingerDeadline: Int64?
    private var closed = false
    private var firstError: Error?

    /// Batches sent more than once (after a lost connection or a retriable broker error).
    public var retriedBatches: Int { lock.withLock { acc.retriedBatches } }

    public init(cluster: KafkaCluster, config: ProducerConfig = ProducerConfig(), logger: Logger = Logger(label: "meridian.producer"),
                clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }) {
        self.cluster = cluster
        var c = config
        if c.enableIdempotence {
            c.acks = -1
            c.maxInFlight = min(c.maxInFlight, 5)
        }
        self.config = c
        self.acc = ProducerAccumulator(config: c)
        self.loop = cluster.group.next()
        self.logger = logger
        self.now = clock
    }

    // MARK: - Public API

    /// Sends one record and waits until the broker acknowledged it.
    public func send(topic: TopicName, key: ByteBuffer? = nil, value: ByteBuffer?, headers: [RecordHeader] = [],
                     partition: Int32? = nil, timestamp: Int64? = nil) async throws -> RecordMetadata {
        let acknowledged = loop.makePromise(of: RecordMetadata.self)
        do {
            try await enqueue(topic: topic, key: key, value: value, headers: headers, partition: partition,
                              timestamp: timestamp) { acknowledged.completeWith($0) }
        } catch {
            acknowledged.fail(error)
        }
        return try await acknowledged.futureResult.get()
    }

    /// Adds a record to its partition's batch and returns once it is buffered; `completion` runs on
    /// an event loop of the cluster's group when the broker answered (or the record failed).
    /// Waits for a producer id, the topic's metadata or room in `buffer.memory` when they are missing.
    public func enqueue(topic: TopicName, key: ByteBuffer? = nil, value: ByteBuffer?, headers: [RecordHeader] = [],
                        partition: Int32? = nil, timestamp: Int64? = nil, completion: Completion? = nil) async throws {
        let size = ProducerAccumulator.size(key: key, value: value, headers: headers)
        while true {
            let t = now()
            // One lock per record on the fast path: append, and see whether a linger timer is needed.
            let (result, armAt): (ProducerAccumulator.AppendResult, Int64?) = try lock.withLock {
                if closed { throw KafkaClientError.closed("producer") }
                let r = try acc.append(topic: topic, partition: partition, key: key, value: value, headers: headers,
                                       timestamp: timestamp ?? t, completion: completion, now: t, size: size)
                if case .drainAt(let at) = r, lingerDeadline.map({ at < $0 }) ?? true { return (r, at) }
                return (r, nil)
            }
            switch result {
            case .drainNow:
                scheduleDrain()
                return
            case .drainAt:
                if let armAt { armLinger(armAt) }
                return
            case .needProducerID:
                try await cluster.retrying { try await initProducerID() }
            case .needTopic:
                try await cluster.retrying { try await loadTopic(topic) }
            case .needMemory:
                await waitForMemory(size)
            }
        }
    }

    /// Sends everything buffered now and waits until every record so far is acknowledged or failed.
    /// Throws the first delivery error seen since the last flush.
    public func flush() async throws {
        lock.withLock { acc.flushing = true }
        scheduleDrain()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done: Bool = lock.withLock {
                if acc.outstanding == 0 { return true }
                flushWaiters.append(c)
                return false
            }
            if done { c.resume() }
        }
        let err: Error? = lock.withLock {
            acc.flushing = false
            defer { firstError = nil }
            return firstError
        }
        if let err { throw err }
    }

    /// Flushes, then closes the producer's connections. Later sends fail.
    public func close() async {
        try? await flush()
        let conns: [KafkaConnection] = lock.withLock {
            closed = true
            lingerTimer?.cancel()
            let c = Array(connections.values)
            connections.removeAll()
            return c
        }
        for c in conns { await c.close() }
    }

    // MARK: - What appending waits for (async, once per topic and while memory is short)

    private func waitForMemory(_ size: Int) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow: Bool = lock.withLock {
                if acc.hasRoom(for: size) { return true }
                memoryWaiters.append(c)
                return false
            }
            if resumeNow { c.resume() }
        }
    }

    private func initProducerID() async throws {
        let conn = try await cluster.anyConnection()
        var req = InitProducerIDRequest()
        req.transactionalID = nil
        req.transactionTimeoutMs = 60_000
        let resp = try await conn.send(req, version: try conn.version(for: InitProducerIDRequest.self, max: 4))
        guard resp.errorCode == .none else { throw KafkaClientError.broker(resp.errorCode, "InitProducerId") }
        lock.withLock {
            if acc.needsProducerID { acc.setProducerID(resp.producerID.rawValue, epoch: resp.producerEpoch) }
        }
    }

    private func loadTopic(_ topic: TopicName) async throws {
        cluster.invalidate(topic)
        let info = try await cluster.topic(topic, allowAutoCreate: true)
        var leaders: [Int32: BrokerID] = [:]
        for p in info.partitions { leaders[p.partition] = p.leader }
        lock.withLock { acc.setTopic(topic, partitions: Int32(info.partitions.count), leaders: leaders) }
    }

    // MARK: - Sending (event loop)

    private func scheduleDrain() {
        let go: Bool = lock.withLock {
            if drainScheduled { return false }
            drainScheduled = true
            return true
        }
        if go { loop.execute { self.drain() } }
    }

    private func armLinger(_ deadline: Int64) {
        lock.withLock {
            if let d = lingerDeadline, d <= deadline { return }
            lingerDeadline = deadline
            lingerTimer?.cancel()
            lingerTimer = loop.scheduleTask(in: .milliseconds(max(0, deadline - now()))) { [weak self] in
                self?.lock.withLock { self?.lingerDeadline = nil }
                self?.drain()
            }
        }
    }

    /// Asks the accumulator what may go now and does it.
    private func drain() {
        let t = now()
        let (d, startConnect, startRefresh, startInit): (ProducerAccumulator.Drain, Set<BrokerID>, Set<TopicName>, Bool) = lock.withLock {
            drainScheduled = false
            let d = acc.drain(now: t) { connections[$0]?.channel.isActive == true }
            let c = d.needConnection.subtracting(connecting)
            connecting.formUnion(c)
            let r = d.needMetadata.subtracting(refreshing)
            refreshing.formUnion(r)
            let i = d.needProducerID && !initializing
            if i { initializing = true }
            return (d, c, r, i)
        }
        finish(d.deliveries)
        if let at = d.wakeAtMs { armLinger(at) }
        for r in d.requests { send(r) }
        if !startRefresh.isEmpty { refresh(startRefresh) }
        for b in startConnect {
            Task {
                do {
                    let c = try await cluster.connection(to: b, for: .produce)
                    lock.withLock { connections[b] = c }
                } catch {
                    logger.debug("cannot connect to broker", metadata: ["broker": "\(b)", "error": "\(error)"])
                    try? await Task.sleep(for: .milliseconds(config.retryBackoffMs))
                }
                lock.withLock { _ = connecting.remove(b) }
                scheduleDrain()
            }
        }
        if startInit {
            Task {
                do {
                    try await cluster.retrying { try await initProducerID() }
                } catch {
                    logger.warning("cannot get a new producer id", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .milliseconds(config.retryBackoffMs))
                }
                lock.withLock { initializing = false }
                scheduleDrain()
            }
        }
    }

    /// Fetches leaders again after a backoff, then drains.
    private func refresh(_ topics: Set<TopicName>) {
        Task {
            try? await Task.sleep(for: .milliseconds(config.retryBackoffMs))
            for t in topics { try? await loadTopic(t) }
            lock.withLock { refreshing.subtract(topics) }
            scheduleDrain()
        }
    }

    private func send(_ r: ProducerAccumulator.Request) {
        guard let conn = lock.withLock({ connections[r.broker] }) else {
            return failed(r, KafkaConnectionError.connectionClosed)
        }
        var req = ProduceRequest()
        req.acks = config.acks
        req.timeoutMs = config.requestTimeoutMs
        var byTopic: [TopicName: [ProduceRequest.PartitionProduceData]] = [:]
        for b in r.batches { byTopic[b.tp.topic, default: []].append(.init(index: b.tp.partition, records: .bytes(b.built!))) }
        req.topicData = byTopic.map { .init(name: $0.key, partitionData: $0.value) }
        let version: Int16
        let frame: ByteBuffer
        do {
            version = try conn.version(for: ProduceRequest.self, max: 9)
            frame = try KafkaConnection.encodeFrame(req, version: version, clientID: cluster.options.clientID)
        } catch {
            return failed(r, error)
        }
        if config.acks == 0 {
            conn.sendFrameWithoutResponse(frame).whenComplete { result in
                switch result {
                case .success: self.finish(self.lock.withLock { self.acc.sentWithoutAnswer(r.batches) })
                case .failure(let e): self.failed(r, e)
                }
                self.scheduleDrain()
            }
            return
        }
        conn.sendFrame(frame).whenComplete { result in
            switch result {
            case .failure(let e):
                self.lock.withLock { self.connections[r.broker] = nil }
                self.failed(r, e)
            case .success(var payload):
                do {
                    if ProduceResponse.responseHeaderVersion(version) >= 1 { _ = try payload.readTaggedFields() }
                    let resp = try ProduceResponse(from: &payload, version: version)
                    let results: [ProducerAccumulator.PartitionResult] = r.batches.map { b in
                        let p = resp.responses.first { $0.name == b.tp.topic }?.partitionResponses.first { $0.index == b.tp.partition }
                        return .init(code: p?.errorCode ?? .unknownServerError, baseOffset: p?.baseOffset ?? -1, appendTime: p?.logAppendTimeMs ?? -1)
                    }
                    let t = self.now()
                    let o = self.lock.withLock { self.acc.received(r.batches, results: results, now: t) }
                    self.finish(o.deliveries)
                    if !o.needMetadata.isEmpty { self.refreshLater(o.needMetadata) }
                } catch {
                    self.failed(r, error)
                }
            }
            self.scheduleDrain()
        }
    }

    private func failed(_ r: ProducerAccumulator.Request, _ error: Error) {
        let t = now()
        let o = lock.withLock { acc.sendFailed(r.batches, error: error, now: t) }
        finish(o.deliveries)
        if !o.needMetadata.isEmpty { refreshLater(o.needMetadata) }
    }

    private func refreshLater(_ topics: Set<TopicName>) {
        let start: Set<TopicName> = lock.withLock {
            let s = topics.subtracting(refreshing)
            refreshing.formUnion(s)
            return s
        }
        if !start.isEmpty { refresh(start) }
    }

    /// Runs the callbacks of finished batches and resumes callers waiting for memory or a flush.
    private func finish(_ deliveries: [ProducerAccumulator.Delivery]) {
        guard !deliveries.isEmpty else { return }
        let waiters: [CheckedContinuation<Void, Never>] = lock.withLock {
            for d in deliveries { if case .failure(let e) = d.result, firstError == nil { firstError = e } }
            var out: [CheckedContinuation<Void, Never>] = []
            if acc.bufferedBytes < config.bufferMemory {
                out += memoryWaiters
                memoryWaiters.removeAll()
            }
            if acc.outstanding == 0 {
                out += flushWaiters
                flushWaiters.removeAll()
            }
            return out
        }
        for d in deliveries {
            let b = d.batch
            switch d.result {
            case .success(let (base, appendTime)):
                for (i, c) in b.callbacks.enumerated() {
                    c?(.success(RecordMetadata(topic: b.tp.topic, partition: b.tp.partition, offset: base < 0 ? -1 : base + Int64(i),
                                               timestamp: appendTime >= 0 ? appendTime : b.timestamps[i])))
                }
            case .failure(let e):
                for c in b.callbacks { c?(.failure(e)) }
            }
        }
        for w in waiters { w.resume() }
    }
}
