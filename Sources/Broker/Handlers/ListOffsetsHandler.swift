import KafkaProtocol
import LogStorage

// ListOffsets (key 2), versions 1–7.
// - timestamp -2: log start offset; -1: high watermark (= last stable offset, no transactions);
//   -3 (v7): offset of the record with the largest timestamp; otherwise the first offset whose
//   timestamp is >= the target, found through the time index, or offset/timestamp -1 if none.
// - leader_epoch is -1 (epochs are not tracked yet); old_style_offsets belong to v0 and stay empty.

extension Broker {
    func handleListOffsets(_ req: ListOffsetsRequest, _ ctx: RequestContext) -> Reply {
        var resp = ListOffsetsResponse()
        for t in req.topics {
            var tr = ListOffsetsResponse.ListOffsetsTopicResponse(name: t.name)
            for p in t.partitions {
                var pr = ListOffsetsResponse.ListOffsetsPartitionResponse(partitionIndex: p.partitionIndex)
                pr.leaderEpoch = -1
                guard let log = logs.log(t.name, p.partitionIndex) else {
                    pr.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                    tr.partitions.append(pr)
                    continue
                }
                let o = log.offsets
                switch p.timestamp {
                case -2:
                    pr.offset = o.logStartOffset
                case -1:
                    pr.offset = o.highWatermark
                case -3:
                    if let m = log.maxTimestampOffset, m.offset < o.highWatermark {
                        pr.offset = m.offset
                        pr.timestamp = m.timestamp
                    }
                default:
                    do {
                        if let hit = try log.offset(forTimestamp: p.timestamp) {
                            pr.offset = hit.offset
                            pr.timestamp = hit.timestamp
                        }
                    } catch {
                        pr.errorCode = BrokerError.code(for: error).rawValue
                    }
                }
                tr.partitions.append(pr)
            }
            resp.topics.append(tr)
        }
        return .response(resp)
    }
}
