import DequeModule
import KafkaProtocol
import NIOCore

/// A producer's batching and delivery bookkeeping, as a value type without I/O or clocks.
///
/// It decides which partition a record goes to, collects records into one open batch per
/// partition, closes batches when they are full or their linger has passed, hands out requests
/// (at most `maxInFlight` batches in flight per partition, at most one batch per partition in a
/// request), numbers idempotent batches, and takes back what the brokers answered: successes,
/// retriable errors (the batch goes back to the front of its queue, in order), fatal errors and
/// batches older than `delivery.timeout.ms`. A batch that had a sequence number and failed leaves a
/// possible gap, so once nothing is in flight the epoch is bumped and the unacknowledged batches are
/// numbered again from 0 (what the Java client does).
///
/// Every method takes the current time; the owner (``KafkaProducer``) supplies the clock, performs
/// what the results ask for (send, fetch metadata, connect, complete callbacks) and feeds the
/// answers back. Tests drive it directly.
struct ProducerAccumulator {
    typealias Completion = KafkaProducer.Completion

    struct Batch {
        /// Creation order; a partition's queue is kept in this order (sequence numbers wrap).
        var id: UInt64
        var tp: TopicPartition
        var builder: RecordBatchBuilder?
        var built: ByteBuffer?
        var callbacks: [Completion?] = []
        var timestamps: [Int64] = []
        var records: Int32 = 0
        var bytes = 0
        var createdMs: Int64
        var baseSequence: Int32 = -1

        mutating func add(key: ByteBuffer?, value: ByteBuffer?, headers: [RecordHeader], timestamp: Int64,
                          completion: Completion?, size: Int) {
            builder!.append(key: key, value: value, headers: headers, timestamp: timestamp)
            callbacks.append(completion)
            timestamps.append(timestamp)
            records += 1
            bytes += size
        }
    }

    /// A produce request to make: batches for one broker, at most one per partition.
    struct Request {
        var broker: BrokerID
        var batches: [Batch]
    }

    /// A batch that is finished: acknowledged (base offset, log append time or -1) or failed.
    struct Delivery {
        var batch: Batch
        var result: Result<(baseOffset: Int64, appendTime: Int64), Error>
    }

    /// What the owner should do after ``drain(now:isConnected:)``.
    struct Drain {
        var requests: [Request] = []
        var deliveries: [Delivery] = []
        /// Topics whose partition leaders are unknown: fetch metadata, then call ``setTopic``.
        var needMetadata = Set<TopicName>()
        /// Leaders without a usable connection.
        var needConnection = Set<BrokerID>()
        /// Idempotence needs a (new) producer id before anything more can be sent.
        var needProducerID = false
        /// When to drain again (a linger or a delivery timeout ends), if nothing else wakes it.
        var wakeAtMs: Int64?
    }

    /// One partition's answer in a produce response.
    struct PartitionResult {
        var code: ErrorCode
        var baseOffset: Int64 = -1
        var appendTime: Int64 = -1
    }

    /// What the owner should do after a response or a failed send.
    struct Outcome {
        var deliveries: [Delivery] = []
        var needMetadata = Set<TopicName>()
    }

    private struct PartitionQueue {
        var tp: TopicPartition
        var open: Batch?
        var ready = Deque<Batch>()
        var inFlight = 0
        var nextSequence: Int32 = 0
        /// A batch failed and is being retried: send one at a time until it succeeds, so the
        /// broker sees sequences in order again.
        var retrying = false

        /// Moves the open batch to the ready queue.
        mutating func close() {
            if let b = open {
                open = nil
                ready.append(b)
            }
        }

        /// Bytes and records of the open batch, if there is one.
        var openFill: (bytes: Int, records: Int32)? { open.map { ($0.bytes, $0.records) } }
    }

    private struct TopicState {
        var partitions: Int32
        var leaders: [Int32: BrokerID]
        var stickyPartition: Int32
    }

    let config: ProducerConfig
    private var topics: [TopicName: TopicState] = [:]
    /// Queues by partition: an index into `queueList`, whose elements change in place (one hash per
    /// record, and no copy of a batch's buffer while records are appended).
    private var queueIndex: [TopicPartition: Int] = [:]
    private var queueList: [PartitionQueue] = []
    private var nextBatchID: UInt64 = 0
    private var rng: SplitMix64
    private(set) var producerID: Int64 = -1
    private(set) var producerEpoch: Int16 = -1
    private(set) var needsEpochBump = false
    /// Bytes of records appended and not yet delivered (`buffer.memory`).
    private(set) var bufferedBytes = 0
    /// Records appended and not yet delivered.
    private(set) var outstanding = 0
    private(set) var retriedBatches = 0
    /// Set while a flush waits: open batches are closed without waiting for their linger.
    var flushing = false

    init(config: ProducerConfig, seed: UInt64 = UInt64.random(in: 0...UInt64.max)) {
        self.config = config
        rng = SplitMix64(seed: seed)
    }

    /// The slot of `tp`'s queue, created when new.
    private mutating func slot(_ tp: TopicPartition) -> Int {
        if let i = queueIndex[tp] { return i }
        queueList.append(PartitionQueue(tp: tp))
        queueIndex[tp] = queueList.count - 1
        return queueList.count - 1
    }

    var needsProducerID: Bool { config.enableIdempotence && producerID < 0 }

    /// Whether a record of `size` bytes fits in `buffer.memory` (one always fits in an empty buffer).
    func hasRoom(for size: Int) -> Bool { bufferedBytes == 0 || bufferedBytes + size <= config.bufferMemory }

    /// Bytes a record takes in the buffer (key, value, headers and a fixed overhead).
    static func size(key: ByteBuffer?, value: ByteBuffer?, headers: [RecordHeader]) -> Int {
        (key?.readableBytes ?? 0) + (value?.readableBytes ?? 0)
            + headers.reduce(0) { $0 + $1.key.utf8.count + ($1.value?.readableBytes ?? 0) } + 24
    }

    // MARK: - Metadata and producer id

    /// Partition count and leaders of a topic, from metadata.
    mutating func setTopic(_ name: TopicName, partitions: Int32, leaders: [Int32: BrokerID]) {
        let sticky = topics[name]?.stickyPartition ?? Int32(truncatingIfNeeded: rng.next() % UInt64(max(1, partitions)))
        topics[name] = TopicState(partitions: partitions, leaders: leaders, stickyPartition: min(sticky, max(0, partitions - 1)))
    }

    /// A new producer id (InitProducerId): unacknowledged batches are numbered again from 0.
    mutating func setProducerID(_ id: Int64, epoch: Int16) {
        producerID = id
        producerEpoch = epoch
        needsEpochBump = false
        renumberUnacknowledged()
    }

    // MARK: - Appending

    enum AppendResult: Equatable {
        /// A batch is ready: drain now.
        case drainNow
        /// Nothing is ready; drain by this time (the open batch's linger).
        case drainAt(Int64)
        /// Not appended: idempotence needs a producer id first (``setProducerID``).
        case needProducerID
        /// Not appended: the topic's partitions are unknown (``setTopic``).
        case needTopic
        /// Not appended: `buffer.memory` is used up until deliveries free some.
        case needMemory
    }

    /// Adds a record to its partition's open batch, or says what is missing first.
    mutating func append(topic: TopicName, partition explicit: Int32?, key: ByteBuffer?, value: ByteBuffer?,
                         headers: [RecordHeader], timestamp: Int64, completion: Completion?, now: Int64,
                         size knownSize: Int? = nil) throws -> AppendResult {
        if needsProducerID { return .needProducerID }
        guard var t = topics[topic] else { return .needTopic }
        // The partition count comes from a broker's metadata: never divide by it unchecked.
        guard t.partitions > 0 else { throw KafkaClientError.broker(.leaderNotAvailable, "topic \(topic) has no partitions in the metadata") }
        let size = knownSize ?? Self.size(key: key, value: value, headers: headers)
        guard hasRoom(for: size) else { return .needMemory }
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
            p = Int32(truncatingIfNeeded: rng.next() % UInt64(t.partitions))
        }
        let tp = TopicPartition(topic, p)
        let i = slot(tp)
        var closedOne = false
        if let fill = queueList[i].openFill, fill.bytes + size > config.batchSize, fill.records > 0 {
            queueList[i].close()
            closedOne = true
            if key == nil && explicit == nil && t.partitions > 1 {
                // Sticky partitioning moves to another partition when a batch is complete.
                t.stickyPartition = (t.stickyPartition + 1 + Int32(truncatingIfNeeded: rng.next() % UInt64(t.partitions - 1))) % t.partitions
                topics[topic] = t
            }
        }
        if queueList[i].open == nil {
            queueList[i].open = Batch(id: nextBatchID, tp: tp, builder: RecordBatchBuilder(capacity: min(config.batchSize, max(1024, size * 16))),
                                      createdMs: now)
            nextBatchID += 1
        }
        queueList[i].open!.add(key: key, value: value, headers: headers, timestamp: timestamp, completion: completion, size: size)
        bufferedBytes += size
        outstanding += 1
        let fill = queueList[i].openFill!
        let full = fill.bytes >= config.batchSize
        let lingerEnds = (queueList[i].open?.createdMs ?? now) + config.lingerMs
        if full { queueList[i].close() }
        return full || closedOne || config.lingerMs <= 0 ? .drainNow : .drainAt(lingerEnds)
    }

    // MARK: - Draining

    /// Closes batches whose linger passed (all of them while flushing), fails those past
    /// `delivery.timeout.ms`, bumps the epoch when due, and hands out every batch that may go now.
    mutating func drain(now: Int64, isConnected: (BrokerID) -> Bool) -> Drain {
        var out = Drain()
        func wake(_ at: Int64) { out.wakeAtMs = min(out.wakeAtMs ?? Int64.max, at) }
        var blocked = false
        if needsEpochBump && !bumpEpoch() { blocked = true }
        if needsProducerID { blocked = true; out.needProducerID = true }
        var byBroker: [BrokerID: [Batch]] = [:]
        for i in queueList.indices {
            let tp = queueList[i].tp
            var q = queueList[i]
            queueList[i].ready = []  // q owns the batches while they change
            queueList[i].open = nil
            if let open = q.open {
                if flushing || now - open.createdMs >= config.lingerMs {
                    q.ready.append(open)
                    q.open = nil
                } else {
                    wake(open.createdMs + config.lingerMs)
                }
            }
            // delivery.timeout.ms covers waiting too (for a leader or a connection), not only
            // attempts: batches that waited too long fail, oldest first, keeping the order.
            while let first = q.ready.first, now - first.createdMs > config.deliveryTimeoutMs {
                let b = q.ready.removeFirst()
                if b.baseSequence >= 0 { needsEpochBump = true }
                out.deliveries.append(fail(b, KafkaClientError.deliveryTimedOut(b.tp, records: b.records, lastError: nil)))
            }
            if let first = q.ready.first { wake(first.createdMs + config.deliveryTimeoutMs + 1) }
            while !blocked, !q.ready.isEmpty, q.inFlight < (q.retrying ? 1 : config.maxInFlight) {
                guard let leader = topics[tp.topic]?.leaders[tp.partition], leader.rawValue >= 0 else {
                    out.needMetadata.insert(tp.topic)
                    break
                }
                guard isConnected(leader) else {
                    out.needConnection.insert(leader)
                    break
                }
                var b = q.ready.removeFirst()
                if b.built == nil {
                    if config.enableIdempotence {
                        b.baseSequence = q.nextSequence
                        q.nextSequence = RecordBatch.incrementSequence(q.nextSequence, by: b.records)
                        b.builder!.producerID = producerID
                        b.builder!.producerEpoch = producerEpoch
                        b.builder!.baseSequence = b.baseSequence
                    }
                    do {
                        b.built = try b.builder!.build(compression: config.compression)
                    } catch {
                        out.deliveries.append(fail(b, error))
                        continue
                    }
                    b.builder = nil
                }
                q.inFlight += 1
                byBroker[leader, default: []].append(b)
            }
            queueList[i] = q
        }
        for broker in byBroker.keys.sorted() {
            // One batch per partition per request: a partition's next batch goes in the next request.
            var rounds: [[Batch]] = []
            for b in byBroker[broker]! {
                if let i = rounds.firstIndex(where: { !$0.contains { $0.tp == b.tp } }) { rounds[i].append(b) } else { rounds.append([b]) }
            }
            out.requests += rounds.map { Request(broker: broker, batches: $0) }
        }
        return out
    }

    // MARK: - Answers

    /// The broker answered a request: one result per batch, in the request's order.
    mutating func received(_ batches: [Batch], results: [PartitionResult], now: Int64) -> Outcome {
        var out = Outcome()
        var retry: [Batch] = []
        for (b, r) in zip(batches, results) {
            queueList[slot(b.tp)].inFlight -= 1
            let retrying = queueList[slot(b.tp)].retrying
            switch r.code {
            case .none, .duplicateSequenceNumber:
                queueList[slot(b.tp)].retrying = false
                // A duplicate was written before; its offset is not in this answer.
                out.deliveries.append(deliver(b, .success((r.code == .none ? r.baseOffset : -1, r.appendTime))))
            case _ where r.code.isRetriable || (r.code == .outOfOrderSequenceNumber && retrying):
                if [.notLeaderOrFollower, .leaderNotAvailable, .unknownTopicOrPartition, .fencedLeaderEpoch].contains(r.code) {
                    topics[b.tp.topic]?.leaders = [:]
                    out.needMetadata.insert(b.tp.topic)
                }
                retry.append(b)
            default:
                if b.baseSequence >= 0 { needsEpochBump = true }
                out.deliveries.append(fail(b, KafkaClientError.broker(r.code, "producing to \(b.tp)")))
            }
        }
        let again = requeue(retry, lastError: "a retriable broker error", now: now)
        out.deliveries += again.deliveries
        out.needMetadata.formUnion(again.needMetadata)
        return out
    }

    /// A request got no answer (the connection was lost or timed out): its batches go back to the
    /// front of their queues, and the broker may or may not have them (idempotence sorts that out).
    mutating func sendFailed(_ batches: [Batch], error: Error, now: Int64) -> Outcome {
        for b in batches { queueList[slot(b.tp)].inFlight -= 1 }
        return requeue(batches, lastError: "\(error)", now: now)
    }

    /// acks=0: the request was written; nothing more will be heard of it.
    mutating func sentWithoutAnswer(_ batches: [Batch]) -> [Delivery] {
        batches.map { b in
            queueList[slot(b.tp)].inFlight -= 1
            return deliver(b, .success((-1, -1)))
        }
    }

    private mutating func requeue(_ batches: [Batch], lastError: String, now: Int64) -> Outcome {
        var out = Outcome()
        for b in batches {
            retriedBatches += 1
            if now - b.createdMs > config.deliveryTimeoutMs {
                if b.baseSequence >= 0 { needsEpochBump = true }
                out.deliveries.append(fail(b, KafkaClientError.deliveryTimedOut(b.tp, records: b.records, lastError: lastError)))
                continue
            }
            queueList[slot(b.tp)].retrying = true
            queueList[slot(b.tp)].ready.append(b)
            out.needMetadata.insert(b.tp.topic)
        }
        // Back in creation order: a retried batch goes before the later ones (sequences may wrap,
        // so the order is the batch id's, not the sequence's).
        for tp in Set(batches.map(\.tp)) {
            let i = slot(tp)
            queueList[i].ready = Deque(queueList[i].ready.sorted { $0.id < $1.id })
        }
        return out
    }

    // MARK: - Epochs

    /// Bumps the epoch once nothing is in flight; false while batches are still in flight. At the
    /// highest epoch a new producer id is needed instead.
    private mutating func bumpEpoch() -> Bool {
        guard queueList.allSatisfy({ $0.inFlight == 0 }) else { return false }
        needsEpochBump = false
        guard producerEpoch < Int16.max else {
            producerID = -1
            return true
        }
        producerEpoch += 1
        renumberUnacknowledged()
        return true
    }

    /// Numbers every built, unacknowledged batch again from 0 per partition, with the current
    /// producer id and epoch (rewriting the producer fields and CRC of the built bytes).
    private mutating func renumberUnacknowledged() {
        for i in queueList.indices {
            var q = queueList[i]
            queueList[i].ready = []
            q.nextSequence = 0
            q.retrying = false
            for j in q.ready.indices where q.ready[j].built != nil {
                q.ready[j].baseSequence = q.nextSequence
                q.nextSequence = RecordBatch.incrementSequence(q.nextSequence, by: q.ready[j].records)
                var built = q.ready[j].built!
                q.ready[j].built = nil
                try? RecordBatch.setProducer(id: producerID, epoch: producerEpoch, baseSequence: q.ready[j].baseSequence,
                                             in: &built, at: built.readerIndex)
                q.ready[j].built = built
            }
            queueList[i] = q
        }
    }

    /// Sets the next sequence number of a partition (tests: sequence wrap-around).
    mutating func setNextSequence(_ s: Int32, for tp: TopicPartition) {
        queueList[slot(tp)].nextSequence = s
    }

    func inFlight(_ tp: TopicPartition) -> Int { queueIndex[tp].map { queueList[$0].inFlight } ?? 0 }

    // MARK: - Deliveries

    private mutating func deliver(_ b: Batch, _ result: Result<(baseOffset: Int64, appendTime: Int64), Error>) -> Delivery {
        bufferedBytes -= b.bytes
        outstanding -= Int(b.records)
        return Delivery(batch: b, result: result)
    }

    private mutating func fail(_ b: Batch, _ error: Error) -> Delivery { deliver(b, .failure(error)) }
}

/// A small deterministic random generator (SplitMix64), so partition choices can be replayed.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
