import Atomics
import KafkaProtocol
import LogStorage
import NIOCore

// Produce (key 0), advertised 0–11, served 3–11.
// - v0–2 (message formats v0/v1) are refused per partition with UNSUPPORTED_VERSION; they are only
//   advertised because librdkafka 2.0.2 enables compression when Produce's range includes v0.
// - acks must be -1, 0 or 1 (else INVALID_REQUIRED_ACKS); acks=0 sends no response at all.
// - Each partition carries exactly one v2 batch; it is validated as Kafka's log validator does
//   (CRC → CORRUPT_MESSAGE; structure, records, keys → INVALID_RECORD; timestamps outside
//   message.timestamp.before/after.max.ms → INVALID_TIMESTAMP; size → MESSAGE_TOO_LARGE) and
//   appended without re-encoding. Broker-owned fields a producer got wrong (the header's max
//   timestamp, offset deltas, negative lengths other than -1) are repaired as Kafka repairs them. A partition named twice in one request is written once (the
//   last occurrence, as Kafka's request map keeps it) and answered once.
// - Internal topics (__consumer_offsets) are refused with INVALID_TOPIC_EXCEPTION.
// - Idempotent batches are checked per producer; a retry gets the original base offset.
// - acks=-1 answers after an fsync of the partition (group-committed) unless fsync is turned off,
//   and so does a retried duplicate: it is answered only once the original is durable.
// - An append that needs a new segment is done on the storage threads, and the connection reads no
//   further request until it is (the order of a connection's appends is kept).
// - Transactions are not supported: a transactional produce is refused.
// - error_message (v8+) explains a failure.

extension BrokerAPI {
    static let produce = BrokerAPI(ProduceRequest.self, versions: 0...11) { broker, req, ctx in
        ctx.version < 3 ? .response(broker.produceTooOld(req)) : broker.handleProduce(req, ctx)
    }
}

extension Broker {
    func produceTooOld(_ req: ProduceRequest) -> ProduceResponse {
        var resp = ProduceResponse()
        resp.responses = req.topicData.map { t in
            .init(name: t.name, partitionResponses: t.partitionData.map {
                .init(index: $0.index, errorCode: .unsupportedVersion, baseOffset: -1)
            })
        }
        return resp
    }

    func handleProduce(_ req: ProduceRequest, _ ctx: RequestContext) -> Reply {
        stats.produceRequests.wrappingIncrement(ordering: .relaxed)
        let now = currentTimeMillis()
        var resp = ProduceResponse()
        let refuseAll: BrokerError?
        if req.transactionalID != nil {
            refuseAll = BrokerError(.transactionalIDAuthorizationFailed, "transactions are not supported by this broker")
        } else if ![-1, 0, 1].contains(req.acks) {
            refuseAll = BrokerError(.invalidRequiredAcks, "acks must be -1, 0 or 1, got \(req.acks)")
        } else {
            refuseAll = nil
        }
        // Kafka keeps one entry per partition: the last occurrence wins.
        var last: [TopicPartition: KafkaRecords?] = [:]
        for t in req.topicData { for p in t.partitionData { last[TopicPartition(t.name, p.index)] = p.records } }
        var answered = Set<TopicPartition>()
        var waits: [(Int, Int, EventLoopFuture<Void>)] = []
        var rolls: [(Int, Int, Partition, ByteBuffer)] = []
        resp.responses.reserveCapacity(req.topicData.count)
        for topic in req.topicData {
            var tr = ProduceResponse.TopicProduceResponse(name: topic.name)
            tr.partitionResponses.reserveCapacity(topic.partitionData.count)
            for p in topic.partitionData {
                let tp = TopicPartition(topic.name, p.index)
                guard answered.insert(tp).inserted else { continue }
                var pr = ProduceResponse.PartitionProduceResponse(index: p.index)
                do {
                    if let refuseAll { throw refuseAll }
                    if let why = topic.name.validationError { throw BrokerError(.invalidTopicException, why) }
                    try logs.refuseClientChange(to: topic.name, "produce to it", code: .invalidTopicException)
                    guard let partition = logs.partition(topic.name, p.index) else {
                        throw BrokerError.unknownPartition(topic.name, p.index)
                    }
                    guard case .bytes(let records)?? = last[tp], records.readableBytes > 0 else {
                        throw BrokerError(.invalidRecord, "the partition carries no record batch")
                    }
                    let first = try RecordBatchHeader(records, at: records.readerIndex)
                    if first.totalSize < records.readableBytes && first.magic == 2 && first.batchLength > 0 {
                        throw BrokerError(.invalidRecord, "Produce v3+ carries exactly one record batch per partition")
                    }
                    do {
                        let r = try partition.append(records, nowMs: now, allowRoll: false)
                        fill(&pr, r)
                        if req.acks == -1 && config.fsyncOnAcksAll {
                            waits.append((resp.responses.count, tr.partitionResponses.count,
                                           partition.flush(upTo: r.lastOffset + 1, on: ctx.eventLoop)))
                        }
                    } catch LogError.rollRequired {
                        rolls.append((resp.responses.count, tr.partitionResponses.count, partition, records))
                    }
                } catch {
                    refuse(&pr, error, topic.name, ctx)
                }
                tr.partitionResponses.append(pr)
            }
            resp.responses.append(tr)
        }
        if rolls.isEmpty {
            if req.acks == 0 { return .noResponse }
            return waits.isEmpty ? .response(resp) : .deferred(awaitDurability(resp, waits, on: ctx.eventLoop))
        }
        // Appends that need a new segment first: on the storage threads, in request order.
        let fsync = req.acks == -1 && config.fsyncOnAcksAll
        let base = resp
        let pendingRolls = rolls
        let pendingWaits = waits
        let done: EventLoopFuture<any KafkaResponseMessage> = offload("segment roll", on: ctx.eventLoop) { [self] in
            var r = base
            var late: [(Int, Int, Partition, Int64)] = []
            for (ti, pi, partition, records) in pendingRolls {
                do {
                    let a = try partition.append(records, nowMs: now, allowRoll: true)
                    fill(&r.responses[ti].partitionResponses[pi], a)
                    if fsync { late.append((ti, pi, partition, a.lastOffset + 1)) }
                } catch {
                    refuse(&r.responses[ti].partitionResponses[pi], error, partition.topic, ctx)
                }
            }
            return (r, late)
        }.flatMap { [self] (r: ProduceResponse, late: [(Int, Int, Partition, Int64)]) in
            let all = pendingWaits + late.map { ($0.0, $0.1, $0.2.flush(upTo: $0.3, on: ctx.eventLoop)) }
            return all.isEmpty ? ctx.eventLoop.makeSucceededFuture(r as any KafkaResponseMessage) : awaitDurability(r, all, on: ctx.eventLoop)
        }
        if req.acks == 0 { return .barrier(done.map { _ in nil }) }
        return .barrier(done.map { $0 })
    }

    private func fill(_ pr: inout ProduceResponse.PartitionProduceResponse, _ r: PartitionLog.AppendResult) {
        pr.baseOffset = r.baseOffset
        pr.logAppendTimeMs = r.logAppendTime
        pr.logStartOffset = r.logStartOffset
    }

    private func refuse(_ pr: inout ProduceResponse.PartitionProduceResponse, _ error: Error, _ topic: TopicName, _ ctx: RequestContext) {
        pr.errorCode = BrokerError.code(for: error)
        pr.baseOffset = -1
        pr.errorMessage = BrokerError.message(for: error)
        if pr.errorCode != .unknownTopicOrPartition {
            logger.info("produce refused", metadata: ["topic": "\(topic)", "partition": "\(pr.index)",
                                                     "error": "\(pr.errorMessage ?? "")", "client": "\(ctx.remoteAddress)"])
        }
    }

    /// The response once every pending flush is done; a failed flush turns its partition's answer
    /// into KAFKA_STORAGE_ERROR.
    private func awaitDurability(_ resp: ProduceResponse, _ waits: [(Int, Int, EventLoopFuture<Void>)],
                                 on loop: EventLoop) -> EventLoopFuture<any KafkaResponseMessage> {
        EventLoopFuture.whenAllComplete(waits.map(\.2), on: loop).map { results in
            var r = resp
            for (i, result) in results.enumerated() {
                if case .failure(let error) = result {
                    let (ti, pi, _) = waits[i]
                    r.responses[ti].partitionResponses[pi].errorCode = BrokerError.code(for: error)
                    r.responses[ti].partitionResponses[pi].errorMessage = "not made durable: \(error)"
                }
            }
            return r
        }
    }
}
