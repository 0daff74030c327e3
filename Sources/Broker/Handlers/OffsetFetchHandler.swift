import KafkaProtocol

// OffsetFetch (key 9), versions 1–7 (v8+ batches groups and is not advertised).
// - topics null (v2+) means every partition the group has an offset for.
// - A partition without a commit gets offset -1 and no error; the client then applies its reset policy.
// - Committed leader epochs are returned as committed (-1 from clients of this broker).
// - require_stable (v7) needs no wait: there are no transactions.

extension BrokerAPI {
    static let offsetFetch = BrokerAPI(OffsetFetchRequest.self, versions: 1...7) { $0.handleOffsetFetch($1, $2) }
}

extension Broker {
    func handleOffsetFetch(_ req: OffsetFetchRequest, _ ctx: RequestContext) -> Reply {
        var resp = OffsetFetchResponse()
        guard !req.groupID.rawValue.isEmpty else {
            resp.errorCode = .invalidGroupID
            return .response(resp)
        }
        let wanted = req.topics.map { ts in ts.flatMap { t in t.partitionIndexes.map { TopicPartition(t.name, $0) } } }
        let committed = groups.fetchOffsets(req.groupID, wanted)
        let order: [TopicPartition] = wanted ?? committed.keys.sorted()
        var byTopic: [(TopicName, [OffsetFetchResponse.OffsetFetchResponsePartition])] = []
        for tp in order {
            let c = committed[tp]
            var p = OffsetFetchResponse.OffsetFetchResponsePartition(partitionIndex: tp.partition)
            p.committedOffset = c?.offset ?? -1
            p.committedLeaderEpoch = c?.leaderEpoch ?? -1
            p.metadata = c?.metadata ?? ""
            if let i = byTopic.firstIndex(where: { $0.0 == tp.topic }) {
                byTopic[i].1.append(p)
            } else {
                byTopic.append((tp.topic, [p]))
            }
        }
        resp.topics = byTopic.map { .init(name: $0.0, partitions: $0.1) }
        return .response(resp)
    }
}
