import KafkaProtocol

// OffsetForLeaderEpoch (key 23), versions 2–4 (v3+ carry a replica id; v4 is flexible).
// - Per partition: the client's current_leader_epoch is checked first (older → FENCED_LEADER_EPOCH,
//   newer → UNKNOWN_LEADER_EPOCH, -1 → no check); then the answer is where the requested epoch
//   ended here: the largest epoch at or below it and the start offset of the next one, or the log
//   end for the current epoch; (-1, -1) for an epoch newer than any known.
// - Consumers (librdkafka 2.1+, Java) use it to check that the log they read from has not diverged
//   after a leader change, which on a single node is every broker restart.

extension BrokerAPI {
    static let offsetForLeaderEpoch = BrokerAPI(OffsetForLeaderEpochRequest.self, versions: 2...4) { $0.handleOffsetForLeaderEpoch($1, $2) }
}

extension Broker {
    func handleOffsetForLeaderEpoch(_ req: OffsetForLeaderEpochRequest, _ ctx: RequestContext) -> Reply {
        var resp = OffsetForLeaderEpochResponse()
        for t in req.topics {
            var tr = OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult(topic: t.topic)
            for p in t.partitions {
                var r = OffsetForLeaderEpochResponse.EpochEndOffset(partition: p.partition)
                if let partition = logs.partition(t.topic, p.partition) {
                    let check = partition.validate(currentLeaderEpoch: p.currentLeaderEpoch)
                    if check != .none {
                        r.errorCode = check
                    } else {
                        let (epoch, end) = partition.endOffset(forEpoch: p.leaderEpoch)
                        r.leaderEpoch = epoch
                        r.endOffset = end
                    }
                } else {
                    r.errorCode = .unknownTopicOrPartition
                }
                tr.partitions.append(r)
            }
            resp.topics.append(tr)
        }
        return .response(resp)
    }
}
