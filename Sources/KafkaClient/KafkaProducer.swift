import DequeModule
import Foundation
import KafkaProtocol
import KafkaWire
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A Kafka producer: batches records per partition, sends them to partition leaders, retries
/// without duplicates or reordering (idempotence on by default).
///
/// Isolation: records are appended to per-partition batches under a lock on the caller's thread
/// (no task or hop per record); everything that touches the network runs on one event loop,
/// woken when a batch fills or its linger expires. Memory is bounded by `bufferMemory`: `send`
/// and `enqueue` wait when it is used up.
public final class KafkaProducer: @unchecked Sendable {
    public typealias Completion = @Sendable (Result<RecordMetadata, Error>) -> Void

    public let cluster: KafkaCluster
    public let config: ProducerConfig
    private let loop: EventLoop
    private let logger: Logger
    private let lock = NIOLock()

    private struct Batch {
        var tp: TopicPartition
        var builder: RecordBatchBuilder?
        var built: ByteBuffer?
        var callbacks: [Completion?] = []
        var timestamps: [Int64] = []
        var records: Int32 = 0
        var bytes = 0
        var firstAppendMs: Int64
        var createdMs: Int64
        var baseSequence: Int32 = -1
    }

    private final class PartitionState {
        var open: Batch?
        var ready = Deque<Batch>()
        var inFlight = 0
        var nextSequence: Int32 = 0
        /// A batch of this partition failed and is being retried: hold later ones until it succeeds.
        var retrying = false
    }

    private struct TopicState {
        var partitions: Int32
        var leaders: [Int32: BrokerID]
        var stickyPartition: Int32
    }

    private var topics: [TopicName: TopicState] = [:]
    private var partitions: [TopicPartition: PartitionState] = [:]
    private var connections: [BrokerID: KafkaConnection] = [:]
    private var connecting = Set<BrokerID>()
    private var inFlightByBroker: [BrokerID: Int] = [:]
    private var bufferedBytes = 0
    private var outstanding = 0
    private var memoryWaiters: [CheckedContinuation<Void, Never>] = []
    private var flushWaiters: [CheckedContinuation<Void, Never>] = []
    private var flushing = false
    private var drainScheduled = false
    private var lingerTimer: Scheduled<Void>?
    private var lingerDeadline: Int64?
    private var producerID: Int64 = -1
    private var producerEpoch: Int16 = -1
    /// A batch that had a sequence number failed (expired or refused): the broker may or may not
    /// have it, so later sequences would leave a gap. Once nothing is in flight the producer bumps
    /// its epoch and numbers every unacknowledged batch again from 0, as the Java client does.
    private var needsEpochBump = false
    private var closed = false
    private var firstError: Error?
    private var _retriedBatches = 0

    /// Batches sent more than once (after a lost connection or a retriable broker error).
    public var retriedBatches: Int { lock.withLock { _retriedBatches } }

    public init(cluster: KafkaCluster, config: ProducerConfig = ProducerConfig(), logger: Logger = Logger(label: "meridian.producer")) {
        self.cluster = cluster
        var c = config
        if c.enableIdempotence {
            c.acks = -1
            c.maxInFlight = min(c.maxInFlight, 5)
        }
        self.config = c
        self.loop = cluster.group.next()
        self.logger = logger
    }

    private static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    // MARK: - Public API

    /// Sends one record and waits until the broker acknowledged it.
    public func send(topic: TopicName, key: ByteBuffer? = nil, value: ByteBuffer?, headers: [RecordHeader] = [],
                     partition: Int32? = nil, timestamp: Int64? = nil) async throws -> RecordMetadata {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<RecordMetadata, Error>) in
            Task {
                do {
                    try await self.enqueue(topic: topic, key: key, value: value, headers: headers, partition: partition,
                                           timestamp: timestamp) { c.resume(with: $0) }
                } catch {
                    c.resume(throwing: error)
                }
            }
        }
    }

    /// Adds a record to its partition's batch and returns once it is buffered; `completion` runs on
    /// the producer's event loop when the broker answered (or the record failed).
    public func enqueue(topic: TopicName, key: ByteBuffer? = nil, value: ByteBuffer?, headers: [RecordHeader] = [],
                        partition explicit: Int32? = nil, timestamp: Int64? = nil, completion: Completion? = nil) async throws {
        if closed { throw KafkaClientError.invalidArgument("the producer is closed") }
        if config.enableIdempotence && lock.withLock({ producerID < 0 }) { try await cluster.retrying { try await initProducerID() } }
        if lock.withLock({ topics[topic] == nil }) { try await cluster.retrying { try await loadTopic(topic) } }
        let size = (key?.readableBytes ?? 0) + (value?.readableBytes ?? 0) + headers.reduce(0) { $0 + $1.key.utf8.count + ($1.value?.readableBytes ?? 0) } + 24
        while true {
            let wait: Bool = lock.withLock { bufferedBytes + size > config.bufferMemory && bufferedBytes > 0 }
            if !wait { break }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow: Bool = lock.withLock {
                    if bufferedBytes + size > config.bufferMemory && bufferedBytes > 0 {
                        memoryWaiters.append(c)
                        return false
                    }
                    return true
                }
                if resumeNow { c.resume() }
            }
        }
        let now = Self.nowMs()
        let ts = timestamp ?? now
        let wake: Bool = try lock.withLock {
            guard var t = topics[topic] else { throw KafkaClientError.unknownTopic(topic) }
            let p: Int32
            if let explicit {
                guard explicit >= 0 && explicit < t.partitions else {
                    throw KafkaClientError.invalidArgument("topic \(topic) has no partition \(explicit) (it has \(t.partitions))")
                }
                p = explicit
            } else if let key {
                p = config.partitioner.partition(forKey: key, partitions: t.partitions)
            } else if config.partitioner == .murmur2 {
                p = t.stickyPartition
            } else {
                p = Int32.random(in: 0..<t.partitions)
            }
            let tp = TopicPartition(topic, p)
            let state = partitions[tp] ?? { let s = PartitionState(); partitions[tp] = s; return s }()
            var closedOne = false
            if let open = state.open, open.bytes + size > config.batchSize, open.records > 0 {
                state.ready.append(open)
                state.open = nil
                closedOne = true
                if key == nil && explicit == nil && t.partitions > 1 {
                    // Sticky partitioning moves on when a batch is complete.
                    t.stickyPartition = (t.stickyPartition + 1 + Int32.random(in: 0..<(t.partitions - 1))) % t.partitions
                    topics[topic] = t
                }
            }
            if state.open == nil {
                state.open = Batch(tp: tp, builder: RecordBatchBuilder(capacity: min(config.batchSize, max(1024, size * 16))),
                                   firstAppendMs: now, createdMs: now)
            }
            state.open!.builder!.append(key: key, value: value, headers: headers, timestamp: ts)
            state.open!.callbacks.append(completion)
            state.open!.timestamps.append(ts)
            state.open!.records += 1
            state.open!.bytes += size
            bufferedBytes += size
            outstanding += 1
            let full = state.open!.bytes >= config.batchSize
            if full {
                state.ready.append(state.open!)
                state.open = nil
            }
            return full || closedOne || config.lingerMs <= 0
        }
        if wake { scheduleDrain() } else { armLinger(now + config.lingerMs) }
    }

    /// Sends everything buffered now and waits until every record so far is acknowledged or failed.
    /// Throws the first delivery error seen since the last flush.
    public func flush() async throws {
        lock.withLock { flushing = true }
        scheduleDrain()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done: Bool = lock.withLock {
                if outstanding == 0 { return true }
                flushWaiters.append(c)
                return false
            }
            if done { c.resume() }
        }
        let err: Error? = lock.withLock {
            flushing = false
            defer { firstError = nil }
            return firstError
        }
        if let err { throw err }
    }

    /// Flushes, then closes the producer's connections.
    public func close() async {
        try? await flush()
        closed = true
        let conns: [KafkaConnection] = lock.withLock {
            lingerTimer?.cancel()
            let c = Array(connections.values)
            connections.removeAll()
            return c
        }
        for c in conns { await c.close() }
    }

    // MARK: - Setup

    private func initProducerID() async throws {
        let conn = try await cluster.anyConnection()
        var req = InitProducerIDRequest()
        req.transactionalID = nil
        req.transactionTimeoutMs = 60_000
        let resp = try await conn.send(req, version: try conn.version(for: InitProducerIDRequest.self, max: 4))
        guard resp.errorCode == .none else { throw KafkaClientError.broker(resp.errorCode, "InitProducerId") }
        lock.withLock {
            if producerID < 0 {
                producerID = resp.producerID.rawValue
                producerEpoch = resp.producerEpoch
            }
        }
    }

    private func loadTopic(_ topic: TopicName) async throws {
        cluster.invalidate(topic)
        let info = try await cluster.topic(topic, allowAutoCreate: true)
        lock.withLock {
            let old = topics[topic]
            var leaders: [Int32: BrokerID] = [:]
            for p in info.partitions { leaders[p.partition] = p.leader }
            let count = Int32(info.partitions.count)
            topics[topic] = TopicState(partitions: count, leaders: leaders,
                                       stickyPartition: old?.stickyPartition ?? Int32.random(in: 0..<max(1, count)))
        }
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
            lingerTimer = loop.scheduleTask(in: .milliseconds(max(0, deadline - Self.nowMs()))) { [weak self] in
                self?.lock.withLock { self?.lingerDeadline = nil }
                self?.drain()
            }
        }
    }

    private struct Outgoing {
        var broker: BrokerID
        var batches: [Batch]
    }

    /// Closes batches whose linger expired and sends every batch that may go now.
    private func drain() {
        let now = Self.nowMs()
        var requests: [Outgoing] = []
        var missingLeaders = Set<TopicName>()
        var needConnections = Set<BrokerID>()
        var nextLinger: Int64? = nil
        var blocked = false
        var expired: [Batch] = []
        lock.withLock {
            drainScheduled = false
            if needsEpochBump {
                blocked = !bumpEpochLocked()
            }
            for (_, state) in partitions {
                if let open = state.open {
                    if flushing || now - open.firstAppendMs >= config.lingerMs {
                        state.ready.append(open)
                        state.open = nil
                    } else {
                        nextLinger = min(nextLinger ?? Int64.max, open.firstAppendMs + config.lingerMs)
                    }
                }
                // delivery.timeout.ms covers waiting too (for a leader or a connection), not only
                // attempts: batches that waited too long fail, oldest first, keeping the order.
                while let first = state.ready.first, now - first.createdMs > config.deliveryTimeoutMs {
                    let b = state.ready.removeFirst()
                    if b.baseSequence >= 0 { needsEpochBump = true }
                    expired.append(b)
                }
                if let first = state.ready.first {
                    nextLinger = min(nextLinger ?? Int64.max, first.createdMs + config.deliveryTimeoutMs + 1)
                }
            }
            var byBroker: [BrokerID: [Batch]] = [:]
            for (tp, state) in partitions where !blocked {
                while !state.ready.isEmpty && state.inFlight < config.maxInFlight {
                    guard let leader = topics[tp.topic]?.leaders[tp.partition], leader.rawValue >= 0 else {
                        missingLeaders.insert(tp.topic)
                        break
                    }
                    guard connections[leader]?.channel.isActive == true else {
                        needConnections.insert(leader)
                        break
                    }
                    var b = state.ready.removeFirst()
                    if b.built == nil {
                        if config.enableIdempotence {
                            b.baseSequence = state.nextSequence
                            state.nextSequence = RecordBatch.incrementSequence(state.nextSequence, by: b.records)
                            b.builder!.producerID = producerID
                            b.builder!.producerEpoch = producerEpoch
                            b.builder!.baseSequence = b.baseSequence
                        }
                        do {
                            b.built = try b.builder!.build(compression: config.compression)
                        } catch {
                            failLocked(b, error)
                            continue
                        }
                        b.builder = nil
                    }
                    state.inFlight += 1
                    byBroker[leader, default: []].append(b)
                }
            }
            for (broker, batches) in byBroker {
                // Split so that each request holds at most one batch per partition.
                var rounds: [[Batch]] = []
                for b in batches {
                    if let i = rounds.firstIndex(where: { !$0.contains { $0.tp == b.tp } }) { rounds[i].append(b) } else { rounds.append([b]) }
                }
                for r in rounds { requests.append(Outgoing(broker: broker, batches: r)) }
            }
            for b in needConnections where connecting.contains(b) { needConnections.remove(b) }
            connecting.formUnion(needConnections)
        }
        for b in expired {
            deliver(b, .failure(KafkaClientError.broker(.requestTimedOut,
                                                        "delivery of \(b.records) record(s) to \(b.tp) (delivery.timeout.ms passed while waiting to be sent)")),
                    appendTime: -1)
        }
        if let nextLinger { armLinger(nextLinger) }
        for r in requests { send(r) }
        for t in missingLeaders {
            Task {
                try? await Task.sleep(for: .milliseconds(config.retryBackoffMs))
                try? await loadTopic(t)
                scheduleDrain()
            }
        }
        for b in needConnections {
            Task {
                do {
                    let c = try await cluster.connection(to: b)
                    lock.withLock { connections[b] = c }
                } catch {
                    logger.debug("cannot connect to broker", metadata: ["broker": "\(b)", "error": "\(error)"])
                    try? await Task.sleep(for: .milliseconds(config.retryBackoffMs))
                }
                lock.withLock { _ = connecting.remove(b) }
                scheduleDrain()
            }
        }
    }

    /// Bumps the epoch once no batch is in flight and renumbers the unacknowledged batches from 0
    /// in each partition (rewriting the producer fields of those already built). Returns false while
    /// batches are still in flight (sending waits). Lock held.
    private func bumpEpochLocked() -> Bool {
        guard partitions.values.allSatisfy({ $0.inFlight == 0 }) else { return false }
        guard producerEpoch < Int16.max else {
            // The epoch cannot grow: a new producer id is needed; enqueue asks for one.
            producerID = -1
            needsEpochBump = false
            return true
        }
        producerEpoch += 1
        needsEpochBump = false
        for (_, state) in partitions {
            state.nextSequence = 0
            state.retrying = false
            for i in state.ready.indices where state.ready[i].built != nil {
                state.ready[i].baseSequence = state.nextSequence
                state.nextSequence = RecordBatch.incrementSequence(state.nextSequence, by: state.ready[i].records)
                var built = state.ready[i].built!
                try? RecordBatch.setProducer(id: producerID, epoch: producerEpoch, baseSequence: state.ready[i].baseSequence,
                                             in: &built, at: built.readerIndex)
                state.ready[i].built = built
            }
        }
        logger.info("bumped the producer epoch after a batch with a sequence number failed",
                    metadata: ["producer_id": "\(producerID)", "epoch": "\(producerEpoch)"])
        return true
    }

    private func send(_ out: Outgoing) {
        guard let conn = lock.withLock({ connections[out.broker] }) else {
            requeue(out.batches, reason: KafkaConnectionError.connectionClosed)
            return
        }
        var req = ProduceRequest()
        req.acks = config.acks
        req.timeoutMs = config.requestTimeoutMs
        var byTopic: [TopicName: [ProduceRequest.PartitionProduceData]] = [:]
        for b in out.batches { byTopic[b.tp.topic, default: []].append(.init(index: b.tp.partition, records: .bytes(b.built!))) }
        req.topicData = byTopic.map { .init(name: $0.key, partitionData: $0.value) }
        let version: Int16
        let frame: ByteBuffer
        do {
            version = try conn.version(for: ProduceRequest.self, max: 9)
            frame = try KafkaConnection.encodeFrame(req, version: version, clientID: cluster.options.clientID)
        } catch {
            lock.withLock { for b in out.batches { partitions[b.tp]?.inFlight -= 1; failLocked(b, error) } }
            return
        }
        if config.acks == 0 {
            conn.sendFrameWithoutResponse(frame).whenComplete { r in
                switch r {
                case .success: self.complete(out.batches, results: out.batches.map { _ in (ErrorCode.none, -1, -1) })
                case .failure(let e): self.requeue(out.batches, reason: e)
                }
            }
            return
        }
        conn.sendFrame(frame).whenComplete { r in
            switch r {
            case .failure(let e):
                self.lock.withLock { self.connections[out.broker] = nil }
                self.requeue(out.batches, reason: e)
            case .success(var payload):
                do {
                    if ProduceResponse.responseHeaderVersion(version) >= 1 { _ = try payload.readTaggedFields() }
                    let resp = try ProduceResponse(from: &payload, version: version)
                    var results: [(ErrorCode, Int64, Int64)] = []
                    for b in out.batches {
                        let p = resp.responses.first { $0.name == b.tp.topic }?.partitionResponses.first { $0.index == b.tp.partition }
                        results.append((p?.errorCode ?? .unknownServerError, p?.baseOffset ?? -1, p?.logAppendTimeMs ?? -1))
                    }
                    self.complete(out.batches, results: results)
                } catch {
                    self.requeue(out.batches, reason: error)
                }
            }
        }
    }

    private func complete(_ batches: [Batch], results: [(ErrorCode, Int64, Int64)]) {
        var retry: [Batch] = []
        var finished: [(Batch, Result<Int64, Error>, Int64)] = []
        lock.withLock {
            for (b, (code, offset, appendTime)) in zip(batches, results) {
                let state = partitions[b.tp]
                state?.inFlight -= 1
                switch code {
                case .none, .duplicateSequenceNumber:
                    state?.retrying = false
                    finished.append((b, .success(code == .none ? offset : -1), appendTime))
                case _ where code.isRetriable || code == .outOfOrderSequenceNumber && (state?.retrying ?? false):
                    if [.notLeaderOrFollower, .leaderNotAvailable, .unknownTopicOrPartition].contains(code) {
                        topics[b.tp.topic]?.leaders = [:]
                    }
                    retry.append(b)
                default:
                    if b.baseSequence >= 0 { needsEpochBump = true }
                    finished.append((b, .failure(KafkaClientError.broker(code, "producing to \(b.tp)")), -1))
                }
            }
        }
        for (b, result, appendTime) in finished { deliver(b, result, appendTime: appendTime) }
        if !retry.isEmpty { requeue(retry, reason: nil) }
        scheduleDrain()
    }

    /// Puts batches back at the front of their partitions, in sequence order, to be sent again.
    private func requeue(_ batches: [Batch], reason: Error?) {
        let now = Self.nowMs()
        var expired: [Batch] = []
        var topicsToRefresh = Set<TopicName>()
        lock.withLock {
            for b in batches.sorted(by: { $0.baseSequence > $1.baseSequence }) {
                let state = partitions[b.tp]
                if reason != nil { state?.inFlight -= 1 }
                _retriedBatches += 1
                if now - b.createdMs > config.deliveryTimeoutMs {
                    if b.baseSequence >= 0 { needsEpochBump = true }
                    expired.append(b)
                    continue
                }
                state?.retrying = true
                state?.ready.prepend(b)
                topicsToRefresh.insert(b.tp.topic)
            }
            // Keep each partition's queue in sequence order (batches requeued from different responses).
            for tp in Set(batches.map(\.tp)) {
                guard let s = partitions[tp] else { continue }
                let sorted = s.ready.sorted { ($0.baseSequence < 0 ? Int32.max : $0.baseSequence) < ($1.baseSequence < 0 ? Int32.max : $1.baseSequence) }
                s.ready = Deque(sorted)
            }
        }
        for b in expired {
            deliver(b, .failure(KafkaClientError.broker(.requestTimedOut,
                                                        "delivery of \(b.records) record(s) to \(b.tp) (delivery.timeout.ms; last error: \(reason.map { "\($0)" } ?? "retriable broker error"))")),
                    appendTime: -1)
        }
        if !topicsToRefresh.isEmpty {
            Task {
                try? await Task.sleep(for: .milliseconds(config.retryBackoffMs))
                for t in topicsToRefresh { try? await loadTopic(t) }
                scheduleDrain()
            }
        }
    }

    private func failLocked(_ b: Batch, _ error: Error) {
        // Called with the lock held; completions run after it is released.
        let callbacks = b.callbacks
        bufferedBytes -= b.bytes
        outstanding -= Int(b.records)
        if firstError == nil { firstError = error }
        let waiters = releaseWaitersLocked()
        loop.execute {
            for c in callbacks { c?(.failure(error)) }
            for w in waiters { w.resume() }
        }
    }

    private func releaseWaitersLocked() -> [CheckedContinuation<Void, Never>] {
        var out: [CheckedContinuation<Void, Never>] = []
        if bufferedBytes < config.bufferMemory {
            out += memoryWaiters
            memoryWaiters.removeAll()
        }
        if outstanding == 0 {
            out += flushWaiters
            flushWaiters.removeAll()
        }
        return out
    }

    private func deliver(_ b: Batch, _ result: Result<Int64, Error>, appendTime: Int64) {
        let waiters: [CheckedContinuation<Void, Never>] = lock.withLock {
            bufferedBytes -= b.bytes
            outstanding -= Int(b.records)
            if case .failure(let e) = result, firstError == nil { firstError = e }
            return releaseWaitersLocked()
        }
        switch result {
        case .success(let base):
            for (i, c) in b.callbacks.enumerated() {
                c?(.success(RecordMetadata(topic: b.tp.topic, partition: b.tp.partition, offset: base < 0 ? -1 : base + Int64(i),
                                           timestamp: appendTime >= 0 ? appendTime : b.timestamps[i])))
            }
        case .failure(let e):
            for c in b.callbacks { c?(.failure(e)) }
        }
        for w in waiters { w.resume() }
    }
}
