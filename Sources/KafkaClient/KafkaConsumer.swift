import Foundation
import KafkaProtocol
import KafkaWire
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A Kafka consumer: `assign` + `seek`, or `subscribe` in a group with the classic protocol.
///
/// Isolation: an actor. Every call (poll, commit, seek) is one hop per *batch of records*, never per
/// record. Group membership (join, sync, heartbeats) runs in a child task; the fetch path goes
/// straight to partition leaders, with the next fetch sent before the last one is handed out.
public actor KafkaConsumer {
    public enum SeekTarget: Sendable, Equatable {
        case offset(Int64)
        case earliest
        case latest
        /// The first record at or after this time (ms since the epoch).
        case timestamp(Int64)
    }

    public let cluster: KafkaCluster
    public let config: ConsumerConfig
    private let logger: Logger

    // Subscription and assignment.
    private var subscription: [TopicName] = []
    private var manualAssignment = false
    public private(set) var assignment: [TopicPartition] = []
    private var positions: [TopicPartition: Int64] = [:]
    private var pendingSeeks: [TopicPartition: PendingSeek] = [:]

    /// What to do with a partition before its next fetch.
    private enum PendingSeek: Hashable {
        case target(SeekTarget)
        /// The group's committed offset if there is one, else `auto.offset.reset`.
        case committedOrReset
        /// Apply `auto.offset.reset` (after OFFSET_OUT_OF_RANGE).
        case reset
    }

    // Group state.
    private var memberID = ""
    private var generation: Int32 = -1
    private var protocolName: String?
    private var needsRejoin = true
    private var heartbeatTask: Task<Void, Never>?
    private var lastCommitMs: Int64 = 0
    private var committedPositions: [TopicPartition: Int64] = [:]
    /// Called with (revoked, assigned) partitions after every rebalance.
    private var rebalanceListener: (@Sendable ([TopicPartition], [TopicPartition]) -> Void)?
    private var closed = false

    public init(cluster: KafkaCluster, config: ConsumerConfig, logger: Logger = Logger(label: "meridian.consumer")) {
        self.cluster = cluster
        self.config = config
        self.logger = logger
    }

    /// Observes assignment changes: called with the partitions given up and those received.
    public func onRebalance(_ listener: @escaping @Sendable ([TopicPartition], [TopicPartition]) -> Void) {
        rebalanceListener = listener
    }

    // MARK: - Assignment

    /// Consumes exactly these partitions, without a group (commits still go to `groupID` if set).
    public func assign(_ partitions: [TopicPartition]) {
        manualAssignment = true
        subscription = []
        assignment = partitions
        for tp in partitions where positions[tp] == nil && pendingSeeks[tp] == nil { pendingSeeks[tp] = .committedOrReset }
        positions = positions.filter { partitions.contains($0.key) }
    }

    /// Joins `config.groupID` and consumes whatever partitions of `topics` the group assigns.
    public func subscribe(_ topics: [TopicName]) throws {
        guard config.groupID != nil else {
            throw KafkaClientError.invalidArgument("subscribe needs a group id (ConsumerConfig.groupID); use assign without one")
        }
        manualAssignment = false
        subscription = topics
        needsRejoin = true
    }

    public func seek(_ tp: TopicPartition, to target: SeekTarget) {
        pendingSeeks[tp] = .target(target)
        positions[tp] = nil
    }

    /// The next offset this consumer will read from each assigned partition.
    public var currentPositions: [TopicPartition: Int64] { positions }

    // MARK: - Polling

    /// Returns the next records (possibly none after `timeout`). Joins/rejoins the group, resolves
    /// seeks and commits automatically as configured.
    public func poll(timeout: Duration = .seconds(1)) async throws -> [ConsumerRecord] {
        guard !closed else { throw KafkaClientError.invalidArgument("the consumer is closed") }
        let deadline = ContinuousClock.now + timeout
        while true {
            if !manualAssignment && !subscription.isEmpty && needsRejoin {
                try await joinGroup()
            }
            try await resolveSeeks()
            try await maybeAutoCommit()
            let records: [ConsumerRecord]
            do {
                records = try await fetchOnce(maxWait: min(config.fetchMaxWaitMs, Int32(max(0, (deadline - ContinuousClock.now).milliseconds))))
            } catch where KafkaCluster.isRetriable(error) {
                // A broker went away (restart, network): refresh metadata and try again until the deadline.
                prefetch = nil
                for tp in assignment { cluster.invalidate(tp.topic) }
                if ContinuousClock.now >= deadline { return [] }
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            if !records.isEmpty || ContinuousClock.now >= deadline { return records }
            if assignment.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        }
    }

    /// Records as an async sequence that ends when the consumer is closed. It polls only when the
    /// caller asks for a record past the last batch (backpressure: nothing is fetched ahead of what
    /// the caller takes, beyond one prefetched response), so auto-commit, which runs inside `poll`,
    /// commits only records already handed to the caller.
    public nonisolated func records() -> Records { Records(consumer: self, handed: handed) }

    public struct Records: AsyncSequence, Sendable {
        public typealias Element = ConsumerRecord
        let consumer: KafkaConsumer
        let handed: HandedOffsets

        public struct AsyncIterator: AsyncIteratorProtocol {
            let consumer: KafkaConsumer
            let handed: HandedOffsets
            var batch: [ConsumerRecord] = []
            var index = 0

            public mutating func next() async throws -> ConsumerRecord? {
                while index == batch.count {
                    if Task.isCancelled { return nil }
                    if await consumer.isClosed { return nil }
                    batch = try await consumer.poll(timeout: .milliseconds(500))
                    index = 0
                }
                defer { index += 1 }
                handed.handed(batch[index])
                return batch[index]
            }
        }

        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(consumer: consumer, handed: handed) }
    }

    private var isClosed: Bool { closed }

    /// Offsets the ``records()`` iterators have handed to the caller, per partition (the next
    /// offset after the last record returned). Written by the iterator outside the actor, under a
    /// lock, once per record: what `poll` fetched but the caller has not taken yet is not counted.
    final class HandedOffsets: @unchecked Sendable {
        private let lock = NIOLock()
        private var offsets: [TopicPartition: Int64] = [:]
        private var streaming = false

        func handed(_ r: ConsumerRecord) {
            lock.withLock {
                streaming = true
                offsets[TopicPartition(r.topic, r.partition)] = r.offset + 1
            }
        }

        /// What may be committed of `positions`: all of them for `poll` users; for stream users,
        /// only up to what the stream handed out.
        func committable(_ positions: [TopicPartition: Int64]) -> [TopicPartition: Int64] {
            lock.withLock {
                guard streaming else { return positions }
                var out: [TopicPartition: Int64] = [:]
                for (tp, p) in positions { if let h = offsets[tp] { out[tp] = min(p, h) } }
                return out
            }
        }
    }

    private let handed = HandedOffsets()

    /// Positions auto-commit and close may commit.
    private var handedPositions: [TopicPartition: Int64] { handed.committable(positions) }

    private typealias FetchResults = [(FetchResponse, [TopicPartition: Int64])]
    /// The next fetch, already on the wire while the caller processes the last one.
    private var prefetch: Task<FetchResults, Error>?

    /// Returns the records of one round of fetches and starts the next round before returning.
    private func fetchOnce(maxWait: Int32) async throws -> [ConsumerRecord] {
        let results: FetchResults
        if let p = prefetch {
            prefetch = nil
            results = try await p.value
        } else {
            guard let t = try await startFetch(maxWait: maxWait) else { return [] }
            results = try await t.value
        }
        let records = try process(results)
        prefetch = try? await startFetch(maxWait: config.fetchMaxWaitMs)
        return records
    }

    /// Sends one fetch per leader of the assigned partitions (concurrently) from the current positions.
    private func startFetch(maxWait: Int32) async throws -> Task<FetchResults, Error>? {
        let ready = assignment.filter { positions[$0] != nil }
        guard !ready.isEmpty else { return nil }
        var byLeader: [BrokerID: [TopicPartition]] = [:]
        for tp in ready {
            let t = try await cluster.topic(tp.topic)
            guard let p = t.partitions.first(where: { $0.partition == tp.partition }) else { continue }
            byLeader[p.leader, default: []].append(tp)
        }
        let snapshot = positions
        let config = self.config
        let cluster = self.cluster
        return Task {
            try await withThrowingTaskGroup(of: (FetchResponse, [TopicPartition: Int64]).self) { group in
                for (leader, tps) in byLeader {
                    group.addTask {
                        let conn = try await cluster.connection(to: leader, for: .fetch)
                        var req = FetchRequest()
                        req.replicaID = -1
                        req.maxWaitMs = maxWait
                        req.minBytes = config.fetchMinBytes
                        req.maxBytes = config.fetchMaxBytes
                        req.isolationLevel = 1
                        var byTopic: [TopicName: [FetchRequest.FetchPartition]] = [:]
                        for tp in tps {
                            byTopic[tp.topic, default: []].append(.init(partition: tp.partition, fetchOffset: snapshot[tp]!,
                                                                         partitionMaxBytes: config.maxPartitionFetchBytes))
                        }
                        req.topics = byTopic.map { .init(topic: $0.key, partitions: $0.value) }
                        let v = try conn.version(for: FetchRequest.self, max: 12)
                        return (try await conn.send(req, version: v), snapshot)
                    }
                }
                var all: FetchResults = []
                for try await r in group { all.append(r) }
                return all
            }
        }
    }

    /// Decodes fetched batches into records for partitions whose position has not moved since the
    /// fetch was sent (a seek or reassignment in between makes the answer stale).
    private func process(_ results: FetchResults) throws -> [ConsumerRecord] {
        var out: [ConsumerRecord] = []
        out.reserveCapacity(1024)
        for (resp, snapshot) in results {
            if resp.errorCode != .none { throw KafkaClientError.broker(resp.errorCode, "Fetch") }
            for t in resp.responses {
                for p in t.partitions {
                    let tp = TopicPartition(t.topic, p.partitionIndex)
                    guard let position = positions[tp], position == snapshot[tp], assignment.contains(tp) else { continue }
                    let code = p.errorCode
                    switch code {
                    case .none:
                        break
                    case .offsetOutOfRange:
                        pendingSeeks[tp] = .reset
                        positions[tp] = nil
                        continue
                    case .notLeaderOrFollower, .leaderNotAvailable, .unknownTopicOrPartition, .fencedLeaderEpoch, .unknownLeaderEpoch:
                        cluster.invalidate(tp.topic)
                        continue
                    default:
                        throw KafkaClientError.broker(code, "Fetch \(tp)")
                    }
                    guard case .bytes(let bytes)? = p.records else { continue }
                    var next = position
                    for (h, i) in RecordBatch.batches(in: bytes) {
                        guard h.nextOffset > next else { continue }
                        if h.isControl { next = h.nextOffset; continue }
                        if config.checkCRCs { _ = try RecordBatch.validate(bytes, at: i) }
                        let from = next
                        try RecordBatch.forEachRecord(in: bytes, at: i) { r in
                            if r.offset >= from {
                                out.append(ConsumerRecord(topic: tp.topic, partition: tp.partition, offset: r.offset,
                                                          timestamp: r.timestamp, key: r.key, value: r.value, headers: r.headers))
                            }
                        }
                        // Compacted gaps and removed records: continue after the batch.
                        next = h.nextOffset
                    }
                    positions[tp] = next
                }
            }
        }
        return out
    }

    // MARK: - Seeks and resets

    private func resolveSeeks() async throws {
        guard !pendingSeeks.isEmpty else { return }
        let seeks = pendingSeeks.filter { assignment.contains($0.key) }
        pendingSeeks = pendingSeeks.filter { !assignment.contains($0.key) }
        let admin = KafkaAdmin(cluster: cluster)
        var committed: [TopicPartition: Int64] = [:]
        let needCommitted = seeks.filter { $0.value == .committedOrReset }.map(\.key)
        if let g = config.groupID, !needCommitted.isEmpty {
            committed = try await admin.groupOffsets(g, partitions: needCommitted)
        }
        var byKind: [SeekTarget: [TopicPartition]] = [:]
        for (tp, pending) in seeks {
            switch pending {
            case .target(.offset(let o)):
                positions[tp] = o
            case .target(let t):
                byKind[t, default: []].append(tp)
            case .committedOrReset:
                if let c = committed[tp] {
                    positions[tp] = c
                } else {
                    byKind[try resetTarget(tp, "the group has no committed offset"), default: []].append(tp)
                }
            case .reset:
                byKind[try resetTarget(tp, "the position is outside the log (OFFSET_OUT_OF_RANGE)"), default: []].append(tp)
            }
        }
        for (kind, tps) in byKind {
            let spec: KafkaAdmin.OffsetSpec
            switch kind {
            case .earliest: spec = .earliest
            case .latest: spec = .latest
            case .timestamp(let t): spec = .timestamp(t)
            case .offset: continue
            }
            for (tp, o) in try await admin.listOffsets(tps, spec) { positions[tp] = o }
        }
    }

    /// Where `auto.offset.reset` puts a partition without a valid position; `.none` refuses.
    private func resetTarget(_ tp: TopicPartition, _ why: String) throws -> SeekTarget {
        switch config.autoOffsetReset {
        case .earliest: return .earliest
        case .latest: return .latest
        case .none:
            // Keep the partition waiting for an explicit seek rather than guessing.
            pendingSeeks[tp] = .reset
            throw KafkaClientError.noOffsetForPartition(tp.topic, tp.partition, why)
        }
    }

    // MARK: - Commits

    /// Commits the current positions (or the given offsets) for the group and waits for the broker.
    public func commit(_ offsets: [TopicPartition: Int64]? = nil) async throws {
        guard let g = config.groupID else {
            throw KafkaClientError.invalidArgument("commit needs a group id (ConsumerConfig.groupID)")
        }
        let toCommit = offsets ?? handedPositions
        guard !toCommit.isEmpty else { return }
        let conn = try await cluster.coordinator(for: g)
        var req = OffsetCommitRequest()
        req.groupID = g
        req.generationIDOrMemberEpoch = manualAssignment ? -1 : generation
        req.memberID = manualAssignment ? "" : memberID
        req.groupInstanceID = manualAssignment ? nil : config.groupInstanceID
        var byTopic: [TopicName: [OffsetCommitRequest.OffsetCommitRequestPartition]] = [:]
        for (tp, o) in toCommit.sorted(by: { $0.key < $1.key }) {
            byTopic[tp.topic, default: []].append(.init(partitionIndex: tp.partition, committedOffset: o, committedMetadata: ""))
        }
        req.topics = byTopic.map { .init(name: $0.key, partitions: $0.value) }
        let resp = try await conn.send(req, version: try conn.version(for: OffsetCommitRequest.self, max: 8))
        for t in resp.topics {
            for p in t.partitions where p.errorCode != .none {
                let code = p.errorCode
                if [.rebalanceInProgress, .illegalGeneration, .unknownMemberID].contains(code) { needsRejoin = true }
                throw KafkaClientError.broker(code, "OffsetCommit \(t.name)-\(p.partitionIndex)")
            }
        }
        for (tp, o) in toCommit { committedPositions[tp] = o }
        lastCommitMs = Self.nowMs()
    }

    private func maybeAutoCommit() async throws {
        guard config.enableAutoCommit, config.groupID != nil, Self.nowMs() - lastCommitMs >= config.autoCommitIntervalMs else { return }
        let changed = handedPositions.filter { committedPositions[$0.key] != $0.value }
        guard !changed.isEmpty else { lastCommitMs = Self.nowMs(); return }
        do {
            try await commit(changed)
        } catch {
            logger.debug("auto-commit failed; will retry", metadata: ["error": "\(error)"])
        }
    }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    // MARK: - Group membership

    private func joinGroup() async throws {
        guard let g = config.groupID else { return }
        // Eager protocols give up everything before rejoining; cooperative ones keep what they own.
        let assignor = config.assignors.first { $0.name == protocolName }
        let cooperative = assignor?.isCooperative ?? false
        if !cooperative && !assignment.isEmpty {
            if config.enableAutoCommit { try? await commit(handedPositions) }
            let revoked = assignment
            assignment = []
            positions = [:]
            rebalanceListener?(revoked, [])
        }
        while true {
            let conn = try await cluster.coordinator(for: g)
            var join = JoinGroupRequest()
            join.groupID = g
            join.sessionTimeoutMs = config.sessionTimeoutMs
            join.rebalanceTimeoutMs = config.rebalanceTimeoutMs
            join.memberID = memberID
            join.groupInstanceID = config.groupInstanceID
            join.protocolType = "consumer"
            var sub = ConsumerProtocolSubscription()
            sub.topics = subscription.map(\.rawValue)
            var owned: [TopicName: [Int32]] = [:]
            for tp in assignment { owned[tp.topic, default: []].append(tp.partition) }
            sub.ownedPartitions = owned.map { .init(topic: $0.key, partitions: $0.value.sorted()) }
            let meta = try sub.encodedWithVersion(1)
            join.protocols = config.assignors.map { .init(name: $0.name, metadata: meta) }
            let jv = try conn.version(for: JoinGroupRequest.self, max: 7)
            // The broker holds JoinGroup until the rebalance completes: allow the rebalance timeout.
            let resp = try await conn.send(join, version: jv, timeout: .milliseconds(Int64(config.rebalanceTimeoutMs) + 5_000))
            let code = resp.errorCode
            if code == .memberIDRequired { memberID = resp.memberID; continue }
            if code == .unknownMemberID || code == .illegalGeneration { memberID = ""; continue }
            if code == .rebalanceInProgress || code == .notCoordinator || code == .coordinatorNotAvailable { continue }
            guard code == .none else { throw KafkaClientError.broker(code, "JoinGroup \(g)") }
            memberID = resp.memberID
            generation = resp.generationID
            protocolName = resp.protocolName
            var sync = SyncGroupRequest()
            sync.groupID = g
            sync.generationID = generation
            sync.memberID = memberID
            sync.groupInstanceID = config.groupInstanceID
            sync.protocolType = "consumer"
            sync.protocolName = protocolName
            if resp.leader == memberID {
                sync.assignments = try await leaderAssignments(resp)
            }
            let sresp = try await conn.send(sync, version: try conn.version(for: SyncGroupRequest.self, max: 5))
            let scode = sresp.errorCode
            if scode == .rebalanceInProgress { continue }
            if scode == .unknownMemberID || scode == .illegalGeneration { memberID = ""; continue }
            guard scode == .none else { throw KafkaClientError.broker(scode, "SyncGroup \(g)") }
            let decoded = sresp.assignment.readableBytes >= 2 ? try ConsumerProtocolAssignment.decode(sresp.assignment) : ConsumerProtocolAssignment()
            let newAssignment = decoded.assignedPartitions.flatMap { t in t.partitions.map { TopicPartition(t.topic, $0) } }.sorted()
            let old = Set(assignment)
            let revoked = assignment.filter { !newAssignment.contains($0) }
            let added = newAssignment.filter { !old.contains($0) }
            if !revoked.isEmpty && config.enableAutoCommit {
                try? await commit(handedPositions.filter { revoked.contains($0.key) })
            }
            assignment = newAssignment
            positions = positions.filter { newAssignment.contains($0.key) }
            for tp in added { pendingSeeks[tp] = .committedOrReset }
            needsRejoin = false
            startHeartbeats(group: g)
            rebalanceListener?(revoked, added)
            logger.debug("joined group", metadata: ["group": "\(g)", "generation": "\(generation)", "partitions": "\(newAssignment.count)"])
            // Cooperative: partitions taken away are handed over in a follow-up rebalance.
            if cooperative || (config.assignors.first { $0.name == protocolName }?.isCooperative ?? false), !revoked.isEmpty {
                needsRejoin = true
            }
            return
        }
    }

    private func leaderAssignments(_ resp: JoinGroupResponse) async throws -> [SyncGroupRequest.SyncGroupRequestAssignment] {
        guard let assignor = config.assignors.first(where: { $0.name == resp.protocolName }) else {
            throw KafkaClientError.invalidArgument("the group chose assignor \(resp.protocolName ?? "-") which this consumer did not offer")
        }
        var subs: [String: ConsumerProtocolSubscription] = [:]
        for m in resp.members { subs[m.memberID] = (try? ConsumerProtocolSubscription.decode(m.metadata)) ?? ConsumerProtocolSubscription() }
        let topics = Set(subs.values.flatMap { $0.topics }).map { TopicName($0) }
        var counts: [TopicName: Int32] = [:]
        for info in try await cluster.refreshMetadata(topics: topics) where info.error == .none {
            counts[info.name] = Int32(info.partitions.count)
        }
        let plan = assignor.assign(members: subs, partitions: counts)
        return try subs.keys.sorted().map { m in
            var a = ConsumerProtocolAssignment()
            var byTopic: [TopicName: [Int32]] = [:]
            for tp in plan[m] ?? [] { byTopic[tp.topic, default: []].append(tp.partition) }
            a.assignedPartitions = byTopic.sorted { $0.key < $1.key }.map { .init(topic: $0.key, partitions: $0.value.sorted()) }
            return .init(memberID: m, assignment: try a.encodedWithVersion(1))
        }
    }

    private func startHeartbeats(group g: GroupID) {
        heartbeatTask?.cancel()
        let interval = config.heartbeatIntervalMs
        let cluster = self.cluster
        heartbeatTask = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(interval))
                guard let self, !Task.isCancelled else { return }
                let (member, gen, instance) = await (self.memberID, self.generation, self.config.groupInstanceID)
                var hb = HeartbeatRequest()
                hb.groupID = g
                hb.generationID = gen
                hb.memberID = member
                hb.groupInstanceID = instance
                do {
                    let conn = try await cluster.coordinator(for: g)
                    let resp = try await conn.send(hb, version: try conn.version(for: HeartbeatRequest.self, max: 4))
                    let code = resp.errorCode
                    if code != .none { await self.heartbeatFailed(code) }
                } catch {
                    // Connection trouble: try again next interval; the session timeout decides.
                }
            }
        }
    }

    private func heartbeatFailed(_ code: ErrorCode) {
        switch code {
        case .unknownMemberID, .illegalGeneration, .fencedInstanceID:
            memberID = code == .unknownMemberID ? "" : memberID
            needsRejoin = true
        default:
            needsRejoin = true
        }
    }

    /// Commits (with auto-commit), leaves the group and stops heartbeating.
    public func close() async {
        guard !closed else { return }
        closed = true
        heartbeatTask?.cancel()
        prefetch?.cancel()
        prefetch = nil
        if config.enableAutoCommit, config.groupID != nil, !handedPositions.isEmpty { try? await commit(handedPositions) }
        if let g = config.groupID, !manualAssignment, !memberID.isEmpty {
            if let conn = try? await cluster.coordinator(for: g) {
                var leave = LeaveGroupRequest()
                leave.groupID = g
                leave.memberID = memberID
                leave.members = [.init(memberID: memberID, groupInstanceID: config.groupInstanceID)]
                if let v = try? conn.version(for: LeaveGroupRequest.self, max: 4) {
                    _ = try? await conn.send(leave, version: v)
                }
            }
        }
        let revoked = assignment
        assignment = []
        if !revoked.isEmpty { rebalanceListener?(revoked, []) }
    }
}

extension KafkaConsumer.SeekTarget: Hashable {}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
