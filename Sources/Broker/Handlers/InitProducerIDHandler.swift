import KafkaProtocol

// InitProducerId (key 22), versions 0–4.
// - Without a transactional id: a fresh producer id (never reused, reserved in blocks from the
//   metadata store) with epoch 0.
// - v3+ with an existing id and epoch: the same id with the epoch bumped (KIP-360), or a fresh id
//   when the epoch would overflow.
// - Transactional ids are refused (TRANSACTIONAL_ID_AUTHORIZATION_FAILED): no transactions here.

extension Broker {
    func handleInitProducerID(_ req: InitProducerIDRequest, _ ctx: RequestContext) -> Reply {
        var resp = InitProducerIDResponse()
        if let tid = req.transactionalID, !tid.isEmpty {
            resp.errorCode = ErrorCode.transactionalIDAuthorizationFailed.rawValue
            return .response(resp)
        }
        do {
            if req.producerID.rawValue >= 0 && req.producerEpoch >= 0 && req.producerEpoch < Int16.max - 1 {
                resp.producerID = req.producerID
                resp.producerEpoch = req.producerEpoch + 1
            } else {
                resp.producerID = ProducerID(try producerIDs.nextID())
                resp.producerEpoch = 0
            }
        } catch {
            logger.error("cannot allocate producer ids", metadata: ["error": "\(error)"])
            resp.errorCode = ErrorCode.kafkaStorageError.rawValue
        }
        return .response(resp)
    }
}
