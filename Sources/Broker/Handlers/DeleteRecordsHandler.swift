import KafkaProtocol

// DeleteRecords (key 21), versions 0–2: moves a partition's log start offset forward (offset -1
// means the high watermark); whole segments below it are deleted. low_watermark is the new start.

extension Broker {
    func handleDeleteRecords(_ req: DeleteRecordsRequest, _ ctx: RequestContext) -> Reply {
        var resp = DeleteRecordsResponse()
        for t in req.topics {
            var tr = DeleteRecordsResponse.DeleteRecordsTopicResult(name: t.name)
            for p in t.partitions {
                var pr = DeleteRecordsResponse.DeleteRecordsPartitionResult(partitionIndex: p.partitionIndex, lowWatermark: -1)
                if let log = logs.log(t.name, p.partitionIndex) {
                    do {
                        pr.lowWatermark = try log.deleteRecords(before: p.offset)
                    } catch {
                        pr.errorCode = BrokerError.code(for: error).rawValue
                    }
                } else {
                    pr.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                }
                tr.partitions.append(pr)
            }
            resp.topics.append(tr)
        }
        return .response(resp)
    }
}
