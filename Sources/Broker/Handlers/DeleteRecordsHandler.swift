import KafkaProtocol

// DeleteRecords (key 21), versions 0–2: moves a partition's log start offset forward (offset -1
// means the high watermark); whole segments below it are deleted. low_watermark is the new start.

extension BrokerAPI {
    static let deleteRecords = BrokerAPI(DeleteRecordsRequest.self, versions: 0...2) { $0.handleDeleteRecords($1, $2) }
}

extension Broker {
    func handleDeleteRecords(_ req: DeleteRecordsRequest, _ ctx: RequestContext) -> Reply {
        .deferred(offload("DeleteRecords", on: ctx.eventLoop) { [self] in serveDeleteRecords(req) })
    }

    private func serveDeleteRecords(_ req: DeleteRecordsRequest) -> any KafkaResponseMessage {
        var resp = DeleteRecordsResponse()
        for t in req.topics {
            var tr = DeleteRecordsResponse.DeleteRecordsTopicResult(name: t.name)
            for p in t.partitions {
                var pr = DeleteRecordsResponse.DeleteRecordsPartitionResult(partitionIndex: p.partitionIndex, lowWatermark: -1)
                if let partition = logs.partition(t.name, p.partitionIndex) {
                    do {
                        try logs.refuseClientChange(to: t.name, "delete its records", code: .invalidTopicException)
                        pr.lowWatermark = try partition.log.deleteRecords(before: p.offset, upTo: partition.highWatermark)
                    } catch {
                        pr.errorCode = BrokerError.code(for: error)
                    }
                } else {
                    pr.errorCode = .unknownTopicOrPartition
                }
                tr.partitions.append(pr)
            }
            resp.topics.append(tr)
        }
        return resp
    }
}
