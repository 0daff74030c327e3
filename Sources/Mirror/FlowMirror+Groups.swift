import KafkaClient
import KafkaProtocol

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
        for g in try await sourceAdmin.listGroups() where !g.groupID.rawValue.isEmpty && groupFilter.matches(g.groupID.rawValue) {
            let committed = try await sourceAdmin.groupOffsets(g.groupID)
            let translated = translate(committed)
            guard !translated.isEmpty else { continue }
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
        for (tp, offset) in committed {
            guard let lane = lock.withLock({ lanes[tp] }), let t = lane.map.translate(offset) else { continue }
            out[lane.target] = t
        }
        return out
    }
}
