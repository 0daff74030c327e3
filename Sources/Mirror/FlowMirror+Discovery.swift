import KafkaClient
import KafkaProtocol
import KafkaWire

extension FlowMirror {
    /// Topic configs copied to remote topics: the ones that decide what a partition keeps and
    /// accepts. Replication settings stay the target's own.
    static let mirroredConfigs: Set<String> = [
        "cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes", "segment.ms", "max.message.bytes",
        "message.timestamp.type", "compression.type", "min.compaction.lag.ms", "max.compaction.lag.ms",
        "delete.retention.ms", "min.cleanable.dirty.ratio", "message.timestamp.difference.max.ms",
    ]

    /// One discovery round: new topics and partitions get remote topics and lanes; configs are
    /// compared on creation and every `configSyncEvery` rounds. Returns the lanes created.
    func discover(round: Int) async -> [PartitionLane] {
        let topics: [KafkaCluster.TopicInfo]
        do {
            topics = try await KafkaAdmin(cluster: source).listTopics(includeInternal: false)
        } catch {
            if !Task.isCancelled { logger.warning("cannot list the source's topics; retrying", metadata: ["error": "\(error)"]) }
            return []
        }
        var created: [PartitionLane] = []
        var selected: [TopicName] = []
        defer { lock.withLock { selectedTopics = selected } }
        for t in topics.sorted(by: { $0.name < $1.name }) where !t.isInternal && t.error == .none && !t.partitions.isEmpty {
            guard topicFilter.matches(t.name.rawValue) || t.name == MM2Records.heartbeatsTopic,
                  let remote = naming.remoteName(for: t.name) else { continue }
            selected.append(t.name)
            do {
                let partitions = t.partitions.count
                let known = lock.withLock { remoteTopics[remote] }
                if known == nil || known! < partitions {
                    try await ensureRemoteTopic(t.name, remote, partitions: partitions)
                } else if settings.configSyncEvery > 0 && round % settings.configSyncEvery == 0 {
                    try await syncConfigs(t.name, remote)
                }
                for p in t.partitions.map(\.partition).sorted() {
                    let tp = TopicPartition(t.name, p)
                    let lane: PartitionLane? = lock.withLock {
                        guard lanes[tp] == nil, owned?.contains(tp) ?? true else { return nil }
                        let lane = PartitionLane(source: tp, target: TopicPartition(remote, p), flow: flow.name,
                                                 maxQueued: settings.partitionBufferBytes, clock: settings.clock) { [weak self] room in
                            self?.laneChanged(room: room)
                        }
                        lanes[tp] = lane
                        return lane
                    }
                    if let lane { created.append(lane) }
                }
            } catch {
                if !Task.isCancelled {
                    logger.warning("cannot prepare the remote topic; retrying next round", metadata: ["topic": "\(t.name)", "remote": "\(remote)", "error": "\(error)"])
                }
            }
        }
        return created
    }

    /// Creates the remote topic with the source's partition count and configs, or adds partitions.
    func ensureRemoteTopic(_ name: TopicName, _ remote: TopicName, partitions: Int) async throws {
        let admin = KafkaAdmin(cluster: target)
        target.invalidate(remote)
        var existing: Int?
        do {
            existing = try await target.topic(remote).partitions.count
        } catch KafkaClientError.unknownTopic {
        } catch let KafkaClientError.broker(code, _) where code == .unknownTopicOrPartition {
        }
        if let existing {
            if existing < partitions {
                try await admin.createPartitions(remote, count: Int32(partitions))
                logger.info("added partitions to the remote topic", metadata: ["remote": "\(remote)", "from": "\(existing)", "to": "\(partitions)"])
            }
        } else {
            let configs = try await sourceConfigs(name) ?? [:]
            do {
                try await admin.createTopic(remote, partitions: Int32(partitions), configs: configs)
                logger.info("created remote topic", metadata: ["topic": "\(name)", "remote": "\(remote)", "partitions": "\(partitions)",
                                                               "configs": "\(configs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))"])
            } catch let KafkaClientError.broker(code, _) where code == .topicAlreadyExists {
            }
        }
        // Wait until the target's metadata shows every partition before lanes write to them.
        target.invalidate(remote)
        let info = try await target.topic(remote)
        guard info.partitions.count >= partitions else {
            throw MirrorError.configuration("remote topic \(remote) shows \(info.partitions.count) of \(partitions) partitions so far")
        }
        if existing != nil { try await syncConfigs(name, remote) }
        lock.withLock { remoteTopics[remote] = info.partitions.count }
    }

    /// The source topic's own settings among ``mirroredConfigs``; nil when the source cluster does
    /// not serve DescribeConfigs (librdkafka's mock cluster, some proxies): the remote topic then
    /// keeps the target's defaults, and that is said once.
    func sourceConfigs(_ name: TopicName) async throws -> [String: String]? {
        var out: [String: String] = [:]
        let configs: [KafkaAdmin.ConfigEntry]
        do {
            configs = try await KafkaAdmin(cluster: source).describeTopicConfigs(name)
        } catch let error where doesNotServe(error, "remote topics get the target's default configs and do not follow the source's") {
            return nil
        }
        for c in configs where c.source == "topic" && Self.mirroredConfigs.contains(c.name) {
            if let v = c.value { out[c.name] = v }
        }
        return out
    }

    /// Whether `error` says the source cluster serves no version of a request the flow can do
    /// without; reports it once per request, with `consequence`.
    func doesNotServe(_ error: Error, _ consequence: String) -> Bool {
        guard case KafkaConnectionError.noCommonVersion(let api) = error else { return false }
        let first = lock.withLock { unservedRequests.insert(api.rawValue).inserted }
        if first {
            logger.warning("the source cluster does not serve \(api.name); \(consequence)", metadata: ["flow": "\(flow.name)"])
        }
        return true
    }

    /// Makes the remote topic's mirrored configs equal the source's: changed values set, settings
    /// the source dropped removed.
    func syncConfigs(_ name: TopicName, _ remote: TopicName) async throws {
        guard let wanted = try await sourceConfigs(name) else { return }
        var have: [String: String] = [:]
        for c in try await KafkaAdmin(cluster: target).describeTopicConfigs(remote)
        where c.source == "topic" && Self.mirroredConfigs.contains(c.name) {
            if let v = c.value { have[c.name] = v }
        }
        var changes: [String: String?] = [:]
        for (k, v) in wanted where have[k] != v { changes[k] = .some(v) }
        for k in have.keys where wanted[k] == nil { changes[k] = .some(nil) }
        guard !changes.isEmpty else { return }
        try await KafkaAdmin(cluster: target).alterTopicConfigs(remote, changes)
        logger.info("remote topic configs follow the source", metadata: ["remote": "\(remote)",
            "changes": "\(changes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value ?? "(default)")" }.joined(separator: ","))"])
    }
}
