import KafkaProtocol

// OffsetDelete (key 47), version 0: deletes committed offsets of a group for the given
// partitions; refused per partition (GROUP_SUBSCRIBED_TO_TOPIC) while a member subscribes to the topic.

extension BrokerAPI {
    static let offsetDelete = BrokerAPI(OffsetDeleteRequest.self, versions: 0...0) { $0.handleOffsetDelete($1, $2) }
}

extension Broker {
    func handleOffsetDelete(_ req: OffsetDeleteRequest, _ ctx: RequestContext) -> Reply {
        let partitions = req.topics.flatMap { t in t.partitions.map { TopicPartition(t.name, $0.partitionIndex) } }
        let (top, codes) = groups.deleteOffsets(req.groupID, partitions)
        var resp = OffsetDeleteResponse()
        resp.errorCode = top
        if top == .none {
            var i = 0
            for t in req.topics {
                var tr = OffsetDeleteResponse.OffsetDeleteResponseTopic(name: t.name)
                for p in t.partitions {
                    tr.partitions.append(.init(partitionIndex: p.partitionIndex, errorCode: codes[i]))
                    i += 1
                }
                resp.topics.append(tr)
            }
        }
        return .response(resp)
    }
}
