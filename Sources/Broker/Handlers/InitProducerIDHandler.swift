import KafkaProtocol

// InitProducerId (key 22), versions 0–4.
// - Without a transactional id: a fresh producer id (never reused, reserved in blocks from the
//   metadata store) with epoch 0.
// - v3+ with an existing id and epoch: the same id with the epoch bumped (KIP-360) only when both
//   match what this broker last granted; otherwise (a stale or foreign id, or after a restart) a
//   fresh id, so no client can fence another producer. A fresh id also when the epoch would overflow.
// - Reserving a new block of ids writes a file: that request is served on the storage threads.
// - Transactional ids are refused (TRANSACTIONAL_ID_AUTHORIZATION_FAILED): no transactions here.

extension BrokerAPI {
    static let initProducerID = BrokerAPI(InitProducerIDRequest.self, versions: 0...4) { $0.handleInitProducerID($1, $2) }
}

extension Broker {
    func handleInitProducerID(_ req: InitProducerIDRequest, _ ctx: RequestContext) -> Reply {
        if let tid = req.transactionalID, !tid.isEmpty {
            var resp = InitProducerIDResponse()
            resp.errorCode = .transactionalIDAuthorizationFailed
            return .response(resp)
        }
        return .deferred(offload("InitProducerId", on: ctx.eventLoop) { [self] in
            var resp = InitProducerIDResponse()
            do {
                let (id, epoch) = try producerIDs.initProducer(producerID: req.producerID.rawValue, epoch: req.producerEpoch)
                resp.producerID = ProducerID(id)
                resp.producerEpoch = epoch
            } catch {
                logger.error("cannot allocate producer ids", metadata: ["error": "\(error)"])
                resp.errorCode = .kafkaStorageError
            }
            return resp
        })
    }
}
