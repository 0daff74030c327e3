import KafkaProtocol
import LogStorage

// ListOffsets (key 2), versions 1–7.
// - timestamp -2: log start offset; -1: high watermark (= last stable offset, no transactions);
//   -3 (v7): offset of the record with the largest timestamp; otherwise the first offset whose
//   timestamp is >= the target, found through the time index, or offset/timestamp -1 if none.
// - leader_epoch (v4+): the epoch that wrote the offset returned (the current epoch for -1);
//   current_leader_epoch is checked as in Fetch. A partition named twice gets INVALID_REQUEST.
// - old_style_offsets belong to v0 and stay empty.

extension BrokerAPI {
    static let listOffsets = BrokerAPI(ListOffsetsRequest.self, versions: 1...7) { $0.handleListOffsets($1, $2) }
}

extension Broker {
    func handleListOffsets(_ req: ListOffsetsRequest, _ ctx: RequestContext) -> Reply {
        var resp = ListOffsetsResponse()
        // Kafka refuses a partition named twice in one request (every occurrence gets INVALID_REQUEST).
        var counts: [TopicPartition: Int] = [:]
        for t in req.topics { for p in t.partitions { counts[TopicPartition(t.name, p.partitionIndex), default: 0] += 1 } }
        for t in req.topics {
            var tr = ListOffsetsResponse.ListOffsetsTopicResponse(name: t.name)
            for p in t.partitions {
                var pr = ListOffsetsResponse.ListOffsetsPartitionResponse(partitionIndex: p.partitionIndex)
                pr.leaderEpoch = -1
                if counts[TopicPartition(t.name, p.partitionIndex), default: 0] > 1 {
                    pr.errorCode = .invalidRequest
                    tr.partitions.append(pr)
                    continue
                }
                guard let partition = logs.partition(t.name, p.partitionIndex) else {
                    pr.errorCode = .unknownTopicOrPartition
                    tr.partitions.append(pr)
                    continue
                }
                let check = partition.validate(currentLeaderEpoch: p.currentLeaderEpoch)
                guard check == .none else {
                    pr.errorCode = check
                    tr.partitions.append(pr)
                    continue
                }
                let o = partition.offsets
                switch p.timestamp {
                case -2:
                    pr.offset = o.logStartOffset
                    pr.leaderEpoch = partition.epoch(at: o.logStartOffset)
                case -1:
                    pr.offset = o.highWatermark
                    pr.leaderEpoch = partition.leaderEpoch
                case -3:
                    if let m = partition.log.maxTimestampOffset, m.offset < o.highWatermark {
                        pr.offset = m.offset
                        pr.timestamp = m.timestamp
                        pr.leaderEpoch = partition.epoch(at: m.offset)
                    }
                default:
                    do {
                        if let hit = try partition.log.offset(forTimestamp: p.timestamp, upTo: o.highWatermark) {
                            pr.offset = hit.offset
                            pr.timestamp = hit.timestamp
                            pr.leaderEpoch = partition.epoch(at: hit.offset)
                        }
                    } catch {
                        pr.errorCode = BrokerError.code(for: error)
                    }
                }
                tr.partitions.append(pr)
            }
            resp.topics.append(tr)
        }
        return .response(resp)
    }
}
