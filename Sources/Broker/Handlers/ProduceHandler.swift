import Atomics
import KafkaProtocol
import LogStorage
import NIOCore

// Produce (key 0), advertised 0–11, served 3–11.
// - v0–2 (message formats v0/v1) are refused per partition with UNSUPPORTED_VERSION; they are only
//   advertised because librdkafka 2.0.2 enables compression when Produce's range includes v0.
// - acks must be -1, 0 or 1 (else INVALID_REQUIRED_ACKS); acks=0 sends no response at all.
// - Each partition carries exactly one v2 batch; it is validated (CRC → CORRUPT_MESSAGE, structure
//   → INVALID_RECORD, size → MESSAGE_TOO_LARGE) and appended without re-encoding.
// - Idempotent batches are checked per producer; a retry gets the original base offset.
// - acks=-1 answers after an fsync of the partition (group-committed) unless fsync is turned off.
// - Transactions are not supported: a transactional produce is refused.
// - error_message (v8+) explains a failure.

extension Broker {
    func produceTooOld(_ req: ProduceRequest) -> ProduceResponse {
        var resp = ProduceResponse()
        resp.responses = req.topicData.map { t in
            .init(name: t.name, partitionResponses: t.partitionData.map {
                .init(index: $0.index, errorCode: ErrorCode.unsupportedVersion.rawValue, baseOffset: -1)
            })
        }
        return resp
    }

    func handleProduce(_ req: ProduceRequest, _ ctx: RequestContext) -> Reply {
        stats.produceRequests.wrappingIncrement(ordering: .relaxed)
        let now = currentTimeMillis()
        var resp = ProduceResponse()
        var waits: [(Int, Int, EventLoopFuture<Void>)] = []
        let refuseAll: BrokerError?
        if req.transactionalID != nil {
            refuseAll = BrokerError(.transactionalIDAuthorizationFailed, "transactions are not supported by this broker")
        } else if ![-1, 0, 1].contains(req.acks) {
            refuseAll = BrokerError(.invalidRequiredAcks, "acks must be -1, 0 or 1, got \(req.acks)")
        } else {
            refuseAll = nil
        }
        resp.responses.reserveCapacity(req.topicData.count)
        for (ti, topic) in req.topicData.enumerated() {
            var tr = ProduceResponse.TopicProduceResponse(name: topic.name)
            tr.partitionResponses.reserveCapacity(topic.partitionData.count)
            for p in topic.partitionData {
                var pr = ProduceResponse.PartitionProduceResponse(index: p.index)
                do {
                    if let refuseAll { throw refuseAll }
                    if let why = topic.name.validationError { throw BrokerError(.invalidTopicException, why) }
                    guard let log = logs.log(topic.name, p.index) else {
                        throw BrokerError.unknownPartition(topic.name, p.index)
                    }
                    guard case .bytes(let records)? = p.records, records.readableBytes > 0 else {
                        throw BrokerError(.invalidRecord, "the partition carries no record batch")
                    }
                    let first = try RecordBatchHeader(records, at: records.readerIndex)
                    if first.totalSize < records.readableBytes && first.magic == 2 && first.batchLength > 0 {
                        throw BrokerError(.invalidRecord, "Produce v3+ carries exactly one record batch per partition")
                    }
                    let r = try log.append(records, nowMs: now)
                    pr.baseOffset = r.baseOffset
                    pr.logAppendTimeMs = r.logAppendTime
                    pr.logStartOffset = r.logStartOffset
                    if req.acks == -1 && config.fsyncOnAcksAll && !r.isDuplicate {
                        waits.append((ti, tr.partitionResponses.count, flusher.flush(log, upTo: r.lastOffset + 1, on: ctx.eventLoop)))
                    } else if r.flushDue {
                        flusher.flushInBackground(log)
                    }
                } catch {
                    pr.errorCode = BrokerError.code(for: error).rawValue
                    pr.baseOffset = -1
                    pr.errorMessage = BrokerError.message(for: error)
                    if pr.errorCode != ErrorCode.unknownTopicOrPartition.rawValue {
                        logger.info("produce refused", metadata: ["topic": "\(topic.name)", "partition": "\(p.index)",
                                                                 "error": "\(pr.errorMessage ?? "")", "client": "\(ctx.remoteAddress)"])
                    }
                }
                tr.partitionResponses.append(pr)
            }
            resp.responses.append(tr)
        }
        if req.acks == 0 { return .noResponse }
        if waits.isEmpty { return .response(resp) }
        let futures = waits.map(\.2)
        let positions = waits.map { ($0.0, $0.1) }
        let base = resp
        return .deferred(EventLoopFuture.whenAllComplete(futures, on: ctx.eventLoop).map { results in
            var r = base
            for (i, result) in results.enumerated() {
                if case .failure(let error) = result {
                    let (ti, pi) = positions[i]
                    r.responses[ti].partitionResponses[pi].errorCode = ErrorCode.kafkaStorageError.rawValue
                    r.responses[ti].partitionResponses[pi].errorMessage = "fsync failed: \(error)"
                }
            }
            return r
        })
    }
}
