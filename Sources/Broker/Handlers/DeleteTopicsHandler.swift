import KafkaProtocol

// DeleteTopics (key 20), versions 1–5 (v6 addresses topics by id and is not advertised).
// - Deletion is immediate: the topic leaves the metadata first, then its log directories go.
// - Unknown topics get UNKNOWN_TOPIC_OR_PARTITION; internal topics TOPIC_DELETION_DISABLED.
// - error_message from v5.

extension BrokerAPI {
    static let deleteTopics = BrokerAPI(DeleteTopicsRequest.self, versions: 1...5) { $0.handleDeleteTopics($1, $2) }
}

extension Broker {
    func handleDeleteTopics(_ req: DeleteTopicsRequest, _ ctx: RequestContext) -> Reply {
        .deferred(offload("DeleteTopics", on: ctx.eventLoop) { [self] in serveDeleteTopics(req) })
    }

    private func serveDeleteTopics(_ req: DeleteTopicsRequest) -> any KafkaResponseMessage {
        var resp = DeleteTopicsResponse()
        let names = req.topicNames + req.topics.compactMap(\.name)
        for name in names {
            var r = DeleteTopicsResponse.DeletableTopicResult(name: name)
            do {
                r.topicID = try logs.deleteTopic(name)
            } catch {
                r.errorCode = BrokerError.code(for: error)
                r.errorMessage = BrokerError.message(for: error)
            }
            resp.responses.append(r)
        }
        return resp
    }
}
