import DequeModule
import KafkaClient
import KafkaProtocol
import KafkaWire
import NIOCore

/// One writer session of a partition: one target connection and one idempotent producer id.
///
/// For each chunk it stores the runs the chunk will occupy (the intent), then produces the chunk's
/// batches — one batch per request, as Kafka requires from v3 — with up to `maxInFlight` requests
/// outstanding. Sequence numbers make the target refuse any batch whose predecessor failed, so
/// what landed is always a prefix of what was sent and the target's log end tells how far it got.
/// Used by one task only.
final class PartitionWriter: @unchecked Sendable {
    let lane: PartitionLane
    let connection: KafkaConnection
    let producer: (id: Int64, epoch: Int16)
    let identity: Bool
    let store: OffsetMapStore
    let maxInFlight: Int
    /// Runs stored so far (landed or in flight).
    private(set) var declared: PartitionOffsetMap
    /// What is known to have landed.
    private var landed: PartitionOffsetMap
    private var landedEnd: Int64
    /// Target offset the next batch will get.
    private var next: Int64
    private var sequence: Int32 = 0

    private struct InFlight {
        var answer: EventLoopFuture<ProduceResponse>
        var base: Int64
        var end: Int64
        var map: PartitionOffsetMap
        var records: Int
        var sourceRuns: [(first: Int64, count: Int64)]
        var epoch: Int32
        var bytes: Int
    }
    private var inFlight = Deque<InFlight>()

    init(lane: PartitionLane, connection: KafkaConnection, producer: (id: Int64, epoch: Int16), declared: PartitionOffsetMap,
         targetEnd: Int64, identity: Bool, store: OffsetMapStore, maxInFlight: Int) {
        self.lane = lane
        self.connection = connection
        self.producer = producer
        self.declared = declared
        landed = declared
        landedEnd = targetEnd
        next = targetEnd
        self.identity = identity
        self.store = store
        self.maxInFlight = max(1, maxInFlight)
    }

    /// Declares the runs of `chunks` in one store write, then produces their batches.
    func write(_ chunks: [PartitionLane.Chunk]) async throws {
        let outputs = chunks.flatMap { c in c.outputs.map { ($0, c.epoch) } }
        if identity {
            // Other producers share the topic: offsets are known only from the answers, so the
            // mapping is stored after each batch lands (see `complete`).
            for (o, epoch) in outputs { try await send(o, epoch: epoch, plan: nil) }
            return
        }
        var plan = declared
        var changed: [Int64: OffsetRun] = [:]
        var t = next
        var plans: [PartitionOffsetMap] = []
        for (o, epoch) in outputs {
            for run in o.sourceRuns {
                let r = try plan.append(src: run.first, tgt: t, count: run.count, epoch: epoch)
                changed[r.src] = r
                t += run.count
            }
            plans.append(plan)
        }
        try await store.write(lane.key, targetTopic: lane.target.topic, runs: changed.values.sorted { $0.src < $1.src })
        declared = plan
        for ((o, epoch), p) in zip(outputs, plans) { try await send(o, epoch: epoch, plan: p) }
    }

    private func send(_ o: BatchConverter.Output, epoch: Int32, plan: PartitionOffsetMap?) async throws {
        while inFlight.count >= maxInFlight { try await completeOldest() }
        // Given to another process (or stopping): not one more request.
        if lane.isClosed { throw CancellationError() }
        var req = ProduceRequest()
        req.acks = -1
        req.timeoutMs = 30_000
        req.topicData = [.init(name: lane.target.topic, partitionData: [.init(index: lane.target.partition, records: .bytes(o.batch))])]
        let version = try connection.version(for: ProduceRequest.self, max: 9)
        // The batch is stamped where encoding copied it into the frame: stamping the fetched
        // bytes themselves would copy them once more.
        var frame = try KafkaConnection.encodeFrame(req, version: version, clientID: connection.clientID)
        try BatchConverter.stamp(o, inFrame: &frame, version: version, producerID: producer.id, epoch: producer.epoch, sequence: sequence)
        sequence = RecordBatch.incrementSequence(sequence, by: Int32(o.recordCount))
        let answer = connection.send(encoded: frame, ProduceRequest.self, version: version)
        let count = Int64(o.recordCount)
        inFlight.append(InFlight(answer: answer, base: next, end: next + count, map: plan ?? landed, records: o.recordCount,
                                 sourceRuns: o.sourceRuns, epoch: epoch, bytes: o.batch.readableBytes))
        next += count
    }

    /// Waits for every request in flight.
    func drain() async throws {
        while !inFlight.isEmpty { try await completeOldest() }
    }

    var hasInFlight: Bool { !inFlight.isEmpty }

    /// Waits for the oldest request in flight.
    func completeOne() async throws {
        if !inFlight.isEmpty { try await completeOldest() }
    }

    private func completeOldest() async throws {
        let f = inFlight.removeFirst()
        let resp = try await f.answer.get()
        let tp = lane.target
        guard let p = resp.responses.first(where: { $0.name == tp.topic })?.partitionResponses.first(where: { $0.index == tp.partition }) else {
            throw KafkaClientError.broker(.unknownServerError, "Produce \(tp) (no answer for the partition)")
        }
        guard p.errorCode == .none else {
            throw KafkaClientError.broker(p.errorCode, "Produce \(tp)\(p.errorMessage.map { ": \($0)" } ?? "")")
        }
        if identity {
            guard p.baseOffset >= 0, p.baseOffset <= Int64.max - Int64(f.records) else {
                throw MirrorError.targetMoved("the target answered base offset \(p.baseOffset) for \(tp)")
            }
            var map = landed
            var t = p.baseOffset
            var changed: [Int64: OffsetRun] = [:]
            for run in f.sourceRuns {
                let r = try map.append(src: run.first, tgt: t, count: run.count, epoch: f.epoch)
                changed[r.src] = r
                t += run.count
            }
            try await store.write(lane.key, targetTopic: tp.topic, runs: changed.values.sorted { $0.src < $1.src })
            declared = map
            landed = map
            landedEnd = t
        } else {
            guard p.baseOffset == f.base else {
                throw MirrorError.targetMoved("the target appended at offset \(p.baseOffset) where the mirror expected \(f.base) in \(tp)")
            }
            landed = f.map
            landedEnd = f.end
        }
        lane.written(map: landed, targetEnd: landedEnd, records: f.records, sourceNext: f.sourceRuns.last.map { $0.first + $0.count },
                     bytes: f.bytes)
    }

    /// After a failure: lets the requests still in flight finish (their outcome shows in the
    /// target's log end, which the next reconcile reads) without acting on them.
    func abandon() async {
        while let f = inFlight.popFirst() { _ = try? await f.answer.get() }
    }
}
