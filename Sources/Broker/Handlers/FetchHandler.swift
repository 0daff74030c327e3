import KafkaProtocol
import LogStorage
import Atomics
import NIOConcurrencyHelpers
import NIOCore

// Fetch (key 1), versions 4–12 (v13+ would need topic ids).
// - Records up to the high watermark only: with fsync on, what is durable (see `Partition`).
// - Whole batches from the one containing fetch_offset; at least one whole batch for the first
//   partition with data even above max_bytes (KIP-74); partition_max_bytes and max_bytes otherwise,
//   and never more than the broker's fetch.max.bytes (55 MiB) whatever the request asks.
// - A partition named twice in one request is served once (the first occurrence).
// - current_leader_epoch (v9+) is checked: older → FENCED_LEADER_EPOCH, newer → UNKNOWN_LEADER_EPOCH,
//   with current_leader filled in (v12). last_fetched_epoch (v12) that the log does not continue
//   gets diverging_epoch and no records.
// - Long poll: with fewer than min_bytes available the request waits up to max_wait_ms, woken by
//   appends to the partitions it asked for (no polling loop); the timer ends it otherwise.
// - last_stable_offset = high watermark (no transactions), aborted_transactions = [],
//   preferred_read_replica = -1 (v11+), no fetch sessions (session_id 0; a request naming a session
//   we never created gets FETCH_SESSION_ID_NOT_FOUND).
// - Record bytes come straight from the segment file: as a FileRegion (sendfile) on plaintext
//   connections for large slices, read into memory on TLS connections and for small slices.

extension BrokerAPI {
    static let fetch = BrokerAPI(FetchRequest.self, versions: 4...12) { $0.handleFetch($1, $2) }
}

extension Broker {
    /// Slices at or below this size are copied into the response buffer; a pread is cheaper than
    /// dup + sendfile + close for them.
    static let inlineFetchBytes = 32 * 1024

    func handleFetch(_ req: FetchRequest, _ ctx: RequestContext) -> Reply {
        if ctx.version >= 7 && req.sessionID != 0 {
            var resp = FetchResponse()
            resp.errorCode = .fetchSessionIDNotFound
            return .response(resp)
        }
        var request = req
        var seen = Set<TopicPartition>()
        request.topics = req.topics.compactMap { t in
            var t = t
            t.partitions = t.partitions.filter { seen.insert(TopicPartition(t.topic, $0.partition)).inserted }
            return t.partitions.isEmpty ? nil : t
        }
        request.maxBytes = Int32(clamping: min(Int(max(0, req.maxBytes)), config.fetchMaxBytes))
        let op = FetchOperation(broker: self, request: request, context: ctx)
        return op.start()
    }
}

/// One fetch request, possibly waiting for data. Lives on the connection's event loop; log waiters
/// hop back to that loop before touching it.
final class FetchOperation: @unchecked Sendable {
    private let broker: Broker
    private let request: FetchRequest
    private let context: RequestContext
    private var promise: EventLoopPromise<any KafkaResponseMessage>?
    private var waiters: [(Partition, UInt64)] = []
    private var timer: Scheduled<Void>?
    private var finished = false

    init(broker: Broker, request: FetchRequest, context: RequestContext) {
        self.broker = broker
        self.request = request
        self.context = context
    }

    private struct Plan {
        var slices: [[PartitionLog.Slice?]]
        var results: [[FetchResponse.PartitionData]]
        var bytes = 0
        var hasError = false
    }

    func start() -> Reply {
        let plan = evaluate()
        if request.maxWaitMs <= 0 || plan.bytes >= max(1, Int(request.minBytes)) || plan.hasError {
            return .response(materialize(plan))
        }
        let p = context.eventLoop.makePromise(of: (any KafkaResponseMessage).self)
        promise = p
        timer = context.eventLoop.scheduleTask(in: .milliseconds(Int64(request.maxWaitMs))) { [self] in
            finish()
        }
        registerWaiters()
        // Data may have arrived between the first look and registering: look again.
        wake()
        return .deferred(p.futureResult)
    }

    /// Waits for a change of any fetched partition. A closed partition (its topic deleted, or the
    /// broker stopping) will not change again: the fetch is answered now with what there is, rather
    /// than waking and re-registering until max_wait_ms (which a client may set to days).
    private func registerWaiters() {
        let loop = context.eventLoop
        var anyClosed = false
        for t in request.topics {
            for p in t.partitions {
                guard let partition = broker.logs.partition(t.topic, p.partition) else { continue }
                let id = partition.addWaiter { [self] in
                    loop.execute { self.wake() }
                }
                if let id { waiters.append((partition, id)) } else { anyClosed = true }
            }
        }
        if anyClosed { loop.execute { [self] in finish() } }
    }

    private func unregisterWaiters() {
        for (partition, id) in waiters { partition.removeWaiter(id) }
        waiters.removeAll()
    }

    private func wake() {
        guard !finished else { return }
        let plan = evaluate()
        if plan.bytes >= max(1, Int(request.minBytes)) || plan.hasError {
            complete(plan)
        } else {
            unregisterWaiters()
            registerWaiters()
        }
    }

    private func finish() {
        guard !finished else { return }
        complete(evaluate())
    }

    private func complete(_ plan: Plan) {
        finished = true
        timer?.cancel()
        unregisterWaiters()
        promise?.succeed(materialize(plan))
    }

    /// Decides which byte ranges to return without reading them.
    private func evaluate() -> Plan {
        broker.stats.fetchEvaluations.wrappingIncrement(ordering: .relaxed)
        var plan = Plan(slices: [], results: [])
        var remaining = Int(request.maxBytes)
        for t in request.topics {
            var slices: [PartitionLog.Slice?] = []
            var results: [FetchResponse.PartitionData] = []
            for p in t.partitions {
                var pd = FetchResponse.PartitionData(partitionIndex: p.partition)
                pd.abortedTransactions = []
                pd.preferredReadReplica = -1
                var slice: PartitionLog.Slice? = nil
                if let partition = broker.logs.partition(t.topic, p.partition) {
                    do {
                        let epochCheck = partition.validate(currentLeaderEpoch: p.currentLeaderEpoch)
                        if epochCheck != .none {
                            pd.currentLeader = .init(leaderID: broker.brokerID, leaderEpoch: partition.leaderEpoch)
                            throw BrokerError(epochCheck, "leader epoch \(p.currentLeaderEpoch) is not the current \(partition.leaderEpoch)")
                        }
                        if p.lastFetchedEpoch >= 0 {
                            let (epoch, end) = partition.endOffset(forEpoch: p.lastFetchedEpoch)
                            if epoch < p.lastFetchedEpoch || end < p.fetchOffset {
                                let o = partition.offsets
                                pd.divergingEpoch = .init(epoch: epoch, endOffset: end)
                                pd.highWatermark = o.highWatermark
                                pd.lastStableOffset = o.highWatermark
                                pd.logStartOffset = o.logStartOffset
                                plan.hasError = true
                                slices.append(nil)
                                results.append(pd)
                                continue
                            }
                        }
                        let limit = min(Int(max(0, p.partitionMaxBytes)), remaining)
                        let r: PartitionLog.ReadResult
                        let hw: Int64
                        if limit > 0 || plan.bytes == 0 {
                            (r, hw) = try partition.read(offset: p.fetchOffset, maxBytes: max(limit, 1))
                        } else {
                            let o = partition.offsets
                            if p.fetchOffset < o.logStartOffset || p.fetchOffset > o.logEndOffset {
                                throw LogError.offsetOutOfRange(requested: p.fetchOffset, logStart: o.logStartOffset, logEnd: o.logEndOffset)
                            }
                            r = .init(slice: nil, logStartOffset: o.logStartOffset, logEndOffset: o.logEndOffset)
                            hw = o.highWatermark
                        }
                        pd.highWatermark = hw
                        pd.lastStableOffset = hw
                        pd.logStartOffset = r.logStartOffset
                        if let s = r.slice {
                            slice = s
                            plan.bytes += s.length
                            remaining = max(0, remaining - s.length)
                        }
                    } catch {
                        pd.errorCode = BrokerError.code(for: error)
                        pd.highWatermark = -1
                        pd.lastStableOffset = -1
                        plan.hasError = true
                    }
                } else {
                    pd.errorCode = .unknownTopicOrPartition
                    pd.highWatermark = -1
                    pd.lastStableOffset = -1
                    plan.hasError = true
                }
                slices.append(slice)
                results.append(pd)
            }
            plan.slices.append(slices)
            plan.results.append(results)
        }
        return plan
    }

    /// Builds the response, attaching record bytes (file regions or copies).
    private func materialize(_ plan: Plan) -> FetchResponse {
        var resp = FetchResponse()
        resp.sessionID = 0
        for (ti, t) in request.topics.enumerated() {
            var tr = FetchResponse.FetchableTopicResponse(topic: t.topic)
            tr.partitions = plan.results[ti]
            for pi in tr.partitions.indices {
                guard let s = plan.slices[ti][pi] else {
                    tr.partitions[pi].records = .bytes(ByteBuffer())
                    continue
                }
                do {
                    if !context.isTLS && s.length > Broker.inlineFetchBytes, let region = try s.file.region(offset: s.position, length: s.length) {
                        tr.partitions[pi].records = .file(region)
                    } else {
                        tr.partitions[pi].records = .bytes(try s.file.read(at: s.position, length: s.length))
                    }
                } catch {
                    broker.logger.error("reading a segment for fetch failed", metadata: ["topic": "\(t.topic)", "error": "\(error)"])
                    tr.partitions[pi].errorCode = .kafkaStorageError
                    tr.partitions[pi].records = .bytes(ByteBuffer())
                }
            }
            resp.responses.append(tr)
        }
        return resp
    }
}
