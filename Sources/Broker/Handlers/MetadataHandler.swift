import KafkaProtocol

// Metadata (key 3), versions 0–12.
// - v0: an empty topic list means all topics; v1+: null means all, empty means none.
// - Topics are created on request when auto-creation is on (always allowed by v0–3 requests,
//   `allow_auto_topic_creation` from v4) and answered ready at once: creation is synchronous here.
// - Brokers: this broker's address on the listener the client used. controller_id is this broker
//   (a live id, which kafka-python's admin client needs). Leader epochs are -1 (not tracked yet).
// - topic_id (v10+) is the topic's UUID; authorized-operations fields keep their "not requested" value.

extension Broker {
    func handleMetadata(_ req: MetadataRequest, _ ctx: RequestContext) -> Reply {
        var resp = MetadataResponse()
        let me = advertisedListeners[ctx.listenerIndex]
        resp.brokers = [.init(nodeID: brokerID, host: me.host, port: Int32(me.port), rack: config.rack)]
        resp.clusterID = clusterID
        resp.controllerID = brokerID

        let names: [TopicName]
        let allRequested = req.topics == nil || (ctx.version == 0 && req.topics?.isEmpty == true)
        if allRequested {
            names = logs.allTopics.map(\.name)
        } else {
            names = (req.topics ?? []).compactMap(\.name)
        }
        let mayCreate = config.autoCreateTopics && !allRequested && (ctx.version < 4 || req.allowAutoTopicCreation)
        for name in names {
            var t = MetadataResponse.MetadataResponseTopic(name: name)
            if let why = name.validationError {
                t.errorCode = ErrorCode.invalidTopicException.rawValue
                logger.debug("metadata for an invalid topic name", metadata: ["topic": "\(name)", "reason": "\(why)"])
                resp.topics.append(t)
                continue
            }
            var topic = logs.topic(name)
            if topic == nil && mayCreate {
                do {
                    try logs.createTopic(name, partitions: config.defaultPartitions, replicationFactor: 1, configs: [:])
                } catch let e as BrokerError where e.code == .topicAlreadyExists {
                    // Created concurrently by another request.
                } catch {
                    logger.warning("auto-creating a topic failed", metadata: ["topic": "\(name)", "error": "\(error)"])
                }
                topic = logs.topic(name)
            }
            guard let topic else {
                t.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                resp.topics.append(t)
                continue
            }
            t.topicID = topic.topicID
            t.isInternal = topic.record.isInternal
            t.partitions = (0..<topic.record.partitions).map { p in
                .init(errorCode: 0, partitionIndex: p, leaderID: brokerID, leaderEpoch: -1,
                      replicaNodes: [brokerID], isrNodes: [brokerID], offlineReplicas: [])
            }
            resp.topics.append(t)
        }
        return .response(resp)
    }
}
