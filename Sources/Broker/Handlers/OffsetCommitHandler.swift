import KafkaProtocol
import NIOCore

// OffsetCommit (key 8), versions 2–8.
// - Members commit with their generation and member id; generation -1 with an empty member id is a
//   standalone commit (assign() users), accepted while the group has no members.
// - Offsets of unknown topics get UNKNOWN_TOPIC_OR_PARTITION; metadata over 4096 bytes
//   OFFSET_METADATA_TOO_LARGE. The answer comes after the commit is fsynced to __consumer_offsets.
// - retention_time_ms (v2–4) is ignored: offsets.retention applies to every group.

extension BrokerAPI {
    static let offsetCommit = BrokerAPI(OffsetCommitRequest.self, versions: 2...8) { $0.handleOffsetCommit($1, $2) }
}

extension Broker {
    func handleOffsetCommit(_ req: OffsetCommitRequest, _ ctx: RequestContext) -> Reply {
        let now = currentTimeMillis()
        var entries: [(TopicPartition, CommittedOffset)] = []
        for t in req.topics {
            for p in t.partitions {
                entries.append((TopicPartition(t.name, p.partitionIndex),
                                CommittedOffset(offset: p.committedOffset, leaderEpoch: p.committedLeaderEpoch,
                                                metadata: p.committedMetadata ?? "", commitTimestamp: now)))
            }
        }
        @Sendable func respond(_ codes: [ErrorCode]) -> OffsetCommitResponse {
            var resp = OffsetCommitResponse()
            var i = 0
            for t in req.topics {
                var tr = OffsetCommitResponse.OffsetCommitResponseTopic(name: t.name)
                for p in t.partitions {
                    tr.partitions.append(.init(partitionIndex: p.partitionIndex, errorCode: codes[i]))
                    i += 1
                }
                resp.topics.append(tr)
            }
            return resp
        }
        guard !req.groupID.rawValue.isEmpty else {
            return .response(respond(entries.map { _ in .invalidGroupID }))
        }
        if let (code, _) = GroupFieldLimits.violation(group: req.groupID, memberID: req.memberID, instanceID: req.groupInstanceID) {
            return .response(respond(entries.map { _ in code }))
        }
        let commit = GroupCoordinator.CommitRequest(memberID: req.memberID, groupInstanceID: req.groupInstanceID,
                                                    generation: req.generationIDOrMemberEpoch, offsets: entries)
        return .deferred(groups.commit(req.groupID, commit, on: ctx.eventLoop).map { respond($0) as any KafkaResponseMessage })
    }
}
