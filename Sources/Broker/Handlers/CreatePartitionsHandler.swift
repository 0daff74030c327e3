import KafkaProtocol

// CreatePartitions (key 37), versions 0–3.
// - count is the new total; it must exceed the current count (INVALID_PARTITIONS otherwise).
// - Assignments, when given, may only name this broker. validate_only changes nothing.

extension BrokerAPI {
    static let createPartitions = BrokerAPI(CreatePartitionsRequest.self, versions: 0...3) { $0.handleCreatePartitions($1, $2) }
}

extension Broker {
    func handleCreatePartitions(_ req: CreatePartitionsRequest, _ ctx: RequestContext) -> Reply {
        .deferred(offload("CreatePartitions", on: ctx.eventLoop) { [self] in serveCreatePartitions(req) })
    }

    private func serveCreatePartitions(_ req: CreatePartitionsRequest) -> any KafkaResponseMessage {
        var resp = CreatePartitionsResponse()
        for t in req.topics {
            var r = CreatePartitionsResponse.CreatePartitionsTopicResult(name: t.name)
            do {
                if let a = t.assignments, !a.allSatisfy({ $0.brokerIDs == [brokerID] }) {
                    throw BrokerError(.invalidReplicaAssignment, "assignments may only name broker \(brokerID)")
                }
                try logs.createPartitions(t.name, count: t.count, validateOnly: req.validateOnly)
            } catch {
                r.errorCode = BrokerError.code(for: error)
                r.errorMessage = BrokerError.message(for: error)
            }
            resp.results.append(r)
        }
        return resp
    }
}
