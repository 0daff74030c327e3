import Foundation
import KafkaClient
import KafkaProtocol
import KafkaWire

extension FlowMirror {
    /// Every `groupSyncInterval`: each selected group's committed source offsets, translated
    /// exactly, are committed in the target for groups with no active member there, and only
    /// forwards (a group that already moved on in the target is left alone).
    func groupSyncLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: settings.groupSyncInterval)
            if Task.isCancelled { return }
            do {
                try await syncGroupsOnce()
            } catch {
                if !Task.isCancelled { logger.warning("group offset sync failed; retrying next round", metadata: ["error": "\(error)"]) }
            }
        }
    }

    /// One sync round; returns, per group, the target offsets it committed.
    @discardableResult
    public func syncGroupsOnce() async throws -> [GroupID: [TopicPartition: Int64]] {
        let sourceAdmin = KafkaAdmin(cluster: source)
        let targetAdmin = KafkaAdmin(cluster: target)
        var done: [GroupID: [TopicPartition: Int64]] = [:]
        let groups: [KafkaAdmin.GroupListing]
        do {
            groups = try await sourceAdmin.listGroups()
        } catch let error where doesNotServe(error, "consumer group offsets are not synced") {
            return [:]
        }
        for g in groups where !g.groupID.rawValue.isEmpty && groupFilter.matches(g.groupID.rawValue)
            && !g.groupID.rawValue.hasPrefix(Self.memberGroupPrefix) {
            let committed = try await sourceAdmin.groupOffsets(g.groupID)
            let pairs = translatePairs(committed)
            guard !pairs.isEmpty else { continue }
            try await writeCheckpoints(g.groupID, pairs)
            var translated: [TopicPartition: Int64] = [:]
            for p in pairs { translated[p.target] = p.downstream }
            let there = try await targetAdmin.describeGroup(g.groupID)
            guard there.members.isEmpty else { continue }
            let current = try await targetAdmin.groupOffsets(g.groupID, partitions: Array(translated.keys))
            let forward = translated.filter { tp, o in current[tp].map { o > $0 } ?? true }
            guard !forward.isEmpty else { continue }
            try await targetAdmin.alterGroupOffsets(g.groupID, forward)
            done[g.groupID] = forward
            logger.info("group offsets synced", metadata: ["group": "\(g.groupID)", "partitions": "\(forward.count)"])
        }
        return done
    }

    /// Source offsets → target offsets of the mirrored partitions (others are left out).
    public func translate(_ committed: [TopicPartition: Int64]) -> [TopicPartition: Int64] {
        var out: [TopicPartition: Int64] = [:]
        for p in translatePairs(committed) { out[p.target] = p.downstream }
        return out
    }

    struct Translated {
        var target: TopicPartition
        var upstream: Int64
        var downstream: Int64
    }

    func translatePairs(_ committed: [TopicPartition: Int64]) -> [Translated] {
        var out: [Translated] = []
        for (tp, offset) in committed {
            guard let lane = lock.withLock({ lanes[tp] }), let t = lane.map.translate(offset) else { continue }
            out.append(Translated(target: lane.target, upstream: offset, downstream: t))
        }
        return out
    }

    /// Writes MirrorMaker 2 checkpoints for what changed since the last round, so tools built on
    /// `RemoteClusterUtils.translateOffsets` find the same translation.
    func writeCheckpoints(_ group: GroupID, _ pairs: [Translated]) async throws {
        let topic = MM2Records.checkpointsTopic(source: flow.source)
        if !lock.withLock({ checkpointsTopicReady }) {
            do {
                try await KafkaAdmin(cluster: target).createTopic(topic, partitions: 1, configs: ["cleanup.policy": "compact"])
            } catch let KafkaClientError.broker(code, _) where code == .topicAlreadyExists {
            }
            lock.withLock { checkpointsTopicReady = true }
        }
        let last = lock.withLock { checkpointed[group.rawValue] ?? [:] }
        let changed = pairs.filter { last[$0.target] != $0.upstream }
        guard !changed.isEmpty else { return }
        var sends: [Task<RecordMetadata, Error>] = []
        for p in changed {
            let r = MM2Records.checkpoint(group: group.rawValue, target: p.target, upstreamOffset: p.upstream, downstreamOffset: p.downstream)
            let producer = store.producer
            sends.append(Task { try await producer.send(topic: topic, key: r.key, value: r.value, partition: 0) })
        }
        for s in sends { _ = try await s.value }
        lock.withLock { for p in changed { checkpointed[group.rawValue, default: [:]][p.target] = p.upstream } }
    }

    /// Writes a heartbeat into the source's `heartbeats` topic every `heartbeatInterval`; the flow
    /// copies it to `<source>.heartbeats` in the target, so the link's delay shows even when every
    /// mirrored topic is idle.
    func heartbeatLoop() async {
        guard settings.heartbeatInterval > .zero else { return }
        var config = ProducerConfig()
        config.lingerMs = 0
        config.deliveryTimeoutMs = 10_000
        let producer = KafkaProducer(cluster: source, config: config)
        var ready = false
        var failing = false
        while !Task.isCancelled {
            do {
                if !ready {
                    do {
                        try await KafkaAdmin(cluster: source).createTopic(MM2Records.heartbeatsTopic, partitions: 1, configs: ["cleanup.policy": "compact"])
                    } catch let KafkaClientError.broker(code, _) where code == .topicAlreadyExists {
                    } catch let error where doesNotServe(error, "heartbeats go to \(MM2Records.heartbeatsTopic) only if it exists or the source creates topics on first write") {
                    }
                    ready = true
                }
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                let r = MM2Records.heartbeat(source: flow.source, target: flow.target, timestamp: now)
                _ = try await producer.send(topic: MM2Records.heartbeatsTopic, key: r.key, value: r.value, partition: 0)
                if failing { logger.info("heartbeats written again") }
                failing = false
            } catch {
                if Task.isCancelled { break }
                if !failing { logger.warning("cannot write a heartbeat into the source; retrying", metadata: ["error": "\(error)"]) }
                failing = true
            }
            try? await Task.sleep(for: settings.heartbeatInterval)
        }
        await producer.close()
    }
}
