import KafkaClient
import KafkaProtocol

extension FlowMirror {
    /// Membership of the source-side group that splits a shared flow's partitions among mirror
    /// processes. Only the membership is used (no records are fetched through it): partitions the
    /// group takes away get their lanes closed (the writer finishes what is in flight), partitions
    /// it gives get lanes in the next discovery round, whose writers reload the mapping and
    /// reconcile with the target before writing.
    func membershipLoop() async {
        guard let instance = settings.groupInstanceID else { return }
        var config = ConsumerConfig(groupID: GroupID(Self.memberGroupPrefix + flow.name))
        config.groupInstanceID = instance
        config.enableAutoCommit = false
        config.fetchRecords = false
        config.sessionTimeoutMs = settings.memberSessionTimeoutMs
        config.heartbeatIntervalMs = Int64(settings.memberSessionTimeoutMs / 4)
        config.rebalanceTimeoutMs = 30_000
        let consumer = KafkaConsumer(cluster: source, config: config, logger: logger)
        consumer.onRebalance { [self] revoked, added in rebalanced(revoked: revoked, added: added) }
        var subscribed: [TopicName] = []
        while !Task.isCancelled {
            let topics = lock.withLock { selectedTopics }
            do {
                if topics != subscribed && !topics.isEmpty {
                    try consumer.subscribe(topics)
                    subscribed = topics
                }
                _ = try await consumer.poll(timeout: .seconds(1))
            } catch {
                if Task.isCancelled { break }
                logger.warning("group membership of the flow failed; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: settings.backoff)
            }
        }
        await consumer.close()
    }

    func rebalanced(revoked: [TopicPartition], added: [TopicPartition]) {
        let closing: [PartitionLane] = lock.withLock {
            owned?.subtract(revoked)
            owned?.formUnion(added)
            return revoked.compactMap { lanes.removeValue(forKey: $0) }
        }
        for lane in closing { lane.close() }
        if !revoked.isEmpty || !added.isEmpty {
            logger.info("partitions reassigned among the flow's mirror processes", metadata: [
                "given up": "\(revoked.count)", "taken": "\(added.count)", "owned": "\(lock.withLock { owned?.count ?? 0 })"])
        }
    }
}
