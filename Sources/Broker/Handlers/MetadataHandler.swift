import KafkaProtocol

// Metadata (key 3), versions 0–12.
// - v0: an empty topic list means all topics; v1+: null means all, empty means none.
// - Topics are created on request when auto-creation is on (always allowed by v0–3 requests,
//   `allow_auto_topic_creation` from v4), on the storage threads; the answer waits until they exist.
// - Brokers: this broker's address on the listener the client used. controller_id is this broker
//   (a live id, which kafka-python's admin client needs). leader_epoch is the partition's epoch
//   (bumped at every broker start). A partition taken offline by a storage failure is reported
//   with KAFKA_STORAGE_ERROR, no leader and this broker as offline replica.
// - topic_id (v10+) is the topic's UUID; authorized-operations fields keep their "not requested" value.

extension BrokerAPI {
    static let metadata = BrokerAPI(MetadataRequest.self, versions: 0...12) { $0.handleMetadata($1, $2) }
}

extension Broker {
    func handleMetadata(_ req: MetadataRequest, _ ctx: RequestContext) -> Reply {
        let allRequested = req.topics == nil || (ctx.version == 0 && req.topics?.isEmpty == true)
        let names: [TopicName] = allRequested ? logs.allTopics.map(\.name) : (req.topics ?? []).compactMap(\.name)
        let mayCreate = config.autoCreateTopics && !allRequested && (ctx.version < 4 || req.allowAutoTopicCreation)
        let missing = mayCreate ? names.filter { $0.validationError == nil && logs.topic($0) == nil } : []
        guard !missing.isEmpty else { return .response(metadataResponse(names, ctx)) }
        // Creating topics writes files: on the storage threads, answering when they exist.
        return .deferred(offload("auto-create topics", on: ctx.eventLoop) { [self] in
            for name in missing {
                do {
                    try logs.createTopic(name, partitions: config.defaultPartitions, replicationFactor: 1, configs: [:])
                } catch let e as BrokerError where e.code == .topicAlreadyExists {
                    // Created concurrently by another request.
                } catch {
                    logger.warning("auto-creating a topic failed", metadata: ["topic": "\(name)", "error": "\(error)"])
                }
            }
        }.map { [self] in metadataResponse(names, ctx) })
    }

    private func metadataResponse(_ names: [TopicName], _ ctx: RequestContext) -> any KafkaResponseMessage {
        var resp = MetadataResponse()
        let me = advertisedListeners[ctx.listenerIndex]
        resp.brokers = [.init(nodeID: brokerID, host: me.host, port: Int32(me.port), rack: config.rack)]
        resp.clusterID = clusterID
        resp.controllerID = brokerID
        for name in names {
            var t = MetadataResponse.MetadataResponseTopic(name: name)
            if let why = name.validationError {
                t.errorCode = .invalidTopicException
                logger.debug("metadata for an invalid topic name", metadata: ["topic": "\(name)", "reason": "\(why)"])
                resp.topics.append(t)
                continue
            }
            guard let topic = logs.topic(name) else {
                t.errorCode = .unknownTopicOrPartition
                resp.topics.append(t)
                continue
            }
            t.topicID = topic.topicID
            t.isInternal = topic.record.isInternal
            t.partitions = topic.partitions.map { p in
                // A partition whose storage failed has no leader until the broker restarts.
                let offline = p.log.offlineReason != nil
                return .init(errorCode: offline ? .kafkaStorageError : .none, partitionIndex: p.index,
                             leaderID: offline ? -1 : brokerID, leaderEpoch: p.leaderEpoch,
                             replicaNodes: [brokerID], isrNodes: offline ? [] : [brokerID], offlineReplicas: offline ? [brokerID] : [])
            }
            resp.topics.append(t)
        }
        return resp
    }
}
