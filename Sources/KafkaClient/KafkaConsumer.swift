import Foundation
import KafkaProtocol
import KafkaWire
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A Kafka consumer: `assign` + `seek`, or `subscribe` in a group with the classic protocol.
///
/// Group decisions are ``GroupMembership``'s; this class is the I/O shell (see the module comment in
/// `KafkaClient.swift`): its state sits behind one lock that is never held across an `await`;
/// `poll` performs the membership's actions (join, sync, commits before revocation), resolves
/// seeks and fetches from partition leaders on fetch connections, with the next fetch sent before
/// the last one is handed out. One task per consumer sends heartbeats. Work is per *batch* of
/// records, never per record.
public final class KafkaConsumer: @unchecked Sendable {
    public enum SeekTarget: Sendable, Equatable, Hashable {
        case offset(Int64)
        case earliest
        case latest
        /// The first record at or after this time (ms since the epoch).
        case timestamp(Int64)
    }

    public let cluster: KafkaCluster
    public let config: ConsumerConfig
    private let logger: Logger
    /// Milliseconds since the epoch; injectable so tests control commit intervals and heartbeats.
    private let now: @Sendable () -> Int64

    /// What to do with a partition before its next fetch.
    private enum PendingSeek: Hashable {
        case target(SeekTarget)
        /// The group's committed offset if there is one, else `auto.offset.reset`.
        case committedOrReset
        /// Apply `auto.offset.reset` (after OFFSET_OUT_OF_RANGE).
        case reset
    }

    private typealias FetchResults = [(FetchResponse, [TopicPartition: Int64])]

    private struct State {
        var membership: GroupMembership?
        var manualAssignment = false
        var assignment: [TopicPartition] = []
        var positions: [TopicPartition: Int64] = [:]
        var pendingSeeks: [TopicPartition: PendingSeek] = [:]
        var lastCommitMs: Int64 = 0
        var committedPositions: [TopicPartition: Int64] = [:]
        var rebalanceListener: (@Sendable ([TopicPartition], [TopicPartition]) -> Void)?
        var closed = false
        /// The next fetch, already on the wire while the caller processes the last one.
        var prefetch: Task<FetchResults, Error>?
        var heartbeats: Task<Void, Never>?
        /// A heartbeat learned that this member was fenced for good; the next poll throws it.
        var fatal: KafkaClientError?
    }

    private let lock = NIOLock()
    private var state = State()
    private let handed = HandedOffsets()

    public init(cluster: KafkaCluster, config: ConsumerConfig, logger: Logger = Logger(label: "meridian.consumer"),
                clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }) {
        self.cluster = cluster
        self.config = config
        self.logger = logger
        self.now = clock
    }

    private func locked<T>(_ body: (inout State) throws -> T) rethrows -> T {
        try lock.withLock { try body(&state) }
    }

    /// Observes assignment changes: called with the partitions given up and those received.
    public func onRebalance(_ listener: @escaping @Sendable ([TopicPartition], [TopicPartition]) -> Void) {
        locked { $0.rebalanceListener = listener }
    }

    // MARK: - Assignment

    /// The partitions this consumer reads now.
    public var assignment: [TopicPartition] { locked { $0.assignment } }

    /// Consumes exactly these partitions, without a group (commits still go to `groupID` if set).
    public func assign(_ partitions: [TopicPartition]) {
        locked { s in
            s.manualAssignment = true
            s.membership = nil
            s.assignment = partitions
            for tp in partitions where s.positions[tp] == nil && s.pendingSeeks[tp] == nil { s.pendingSeeks[tp] = .committedOrReset }
            s.positions = s.positions.filter { partitions.contains($0.key) }
        }
    }

    /// Joins `config.groupID` and consumes whatever partitions of `topics` the group assigns.
    public func subscribe(_ topics: [TopicName]) throws {
        guard let g = config.groupID else {
            throw KafkaClientError.invalidArgument("subscribe needs a group id (ConsumerConfig.groupID); use assign without one")
        }
        let start: Bool = locked { s in
            s.manualAssignment = false
            if s.membership == nil { s.membership = GroupMembership(settings: .init(config, group: g)) }
            s.membership!.subscribe(topics)
            if s.heartbeats == nil { return true }
            return false
        }
        if start { startHeartbeats() }
    }

    /// Moves the position of `tp`. An absolute offset takes effect at once (it is what ``commit(_:)``
    /// and ``currentPositions`` see next); the others are looked up before the next fetch.
    public func seek(_ tp: TopicPartition, to target: SeekTarget) {
        locked { s in
            if case .offset(let o) = target {
                s.pendingSeeks[tp] = nil
                s.positions[tp] = o
            } else {
                s.pendingSeeks[tp] = .target(target)
                s.positions[tp] = nil
            }
        }
    }

    /// The next offset this consumer will read from each assigned partition.
    public var currentPositions: [TopicPartition: Int64] { locked { $0.positions } }

    // MARK: - Polling

    /// Returns the next records (possibly none after `timeout`). Joins/rejoins the group, resolves
    /// seeks and commits automatically as configured.
    public func poll(timeout: Duration = .seconds(1)) async throws -> [ConsumerRecord] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (closed, fatal) = locked { ($0.closed, $0.fatal) }
            if closed { throw KafkaClientError.closed("consumer") }
            if let fatal { throw fatal }
            let records: [ConsumerRecord]
            do {
                try await runGroup()
                if !config.fetchRecords {
                    if ContinuousClock.now >= deadline { return [] }
                    try await Task.sleep(for: min(.milliseconds(100), deadline - ContinuousClock.now))
                    continue
                }
                try await resolveSeeks()
                try await maybeAutoCommit()
                let wait = min(config.fetchMaxWaitMs, Int32(max(0, (deadline - ContinuousClock.now).milliseconds)))
                records = try await fetchOnce(maxWait: wait)
            } catch where KafkaClientError.isRetriable(error) {
                // A broker went away (restart, network): refresh metadata and try again until the deadline.
                let assigned = locked { s -> [TopicPartition] in
                    s.prefetch = nil
                    return s.assignment
                }
                for tp in assigned { cluster.invalidate(tp.topic) }
                if ContinuousClock.now >= deadline { return [] }
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            if !records.isEmpty || ContinuousClock.now >= deadline { return records }
            if locked({ $0.assignment.isEmpty }) { try await Task.sleep(for: .milliseconds(50)) }
        }
    }

    /// Records as an async sequence that ends when the consumer is closed. It polls only when the
    /// caller asks for a record past the last batch (backpressure: nothing is fetched ahead of what
    /// the caller takes, beyond one prefetched response), so auto-commit, which runs inside `poll`,
    /// commits only records already handed to the caller.
    public func records() -> Records { Records(consumer: self, handed: handed) }

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
                    if consumer.isClosed { return nil }
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

    private var isClosed: Bool { locked { $0.closed } }

    /// Offsets the ``records()`` iterators have handed to the caller, per partition (the next
    /// offset after the last record returned). Written by the iterator under a lock, once per
    /// record: what `poll` fetched but the caller has not taken yet is not counted.
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

    /// Positions auto-commit and close may commit.
    private var handedPositions: [TopicPartition: Int64] { handed.committable(currentPositions) }

    // MARK: - Group (the membership's actions)

    private func runGroup() async throws {
        let t = now()
        let actions = locked { $0.membership?.poll(now: t) ?? [] }
        try await perform(actions)
    }

    /// Performs membership actions in order, feeding answers back; the rebalance listener hears
    /// once what was revoked and added.
    private func perform(_ initial: [GroupMembership.Action]) async throws {
        guard !initial.isEmpty, let g = config.groupID else { return }
        var queue = initial
        var revoked: [TopicPartition] = [], added: [TopicPartition] = []
        defer {
            if !revoked.isEmpty || !added.isEmpty, let listener = locked({ $0.rebalanceListener }) { listener(revoked, added) }
        }
        while !queue.isEmpty {
            let action = queue.removeFirst()
            var next: [GroupMembership.Action] = []
            switch action {
            case .sendJoin(let req):
                let resp: JoinGroupResponse
                do {
                    let conn = try await cluster.coordinator(for: g)
                    let v = try conn.version(for: JoinGroupRequest.self, max: 7)
                    // The broker holds JoinGroup until the rebalance completes: allow the rebalance timeout.
                    resp = try await conn.send(req, version: v, timeout: .milliseconds(Int64(config.rebalanceTimeoutMs) + 5_000))
                } catch {
                    locked { $0.membership?.joinFailed() }
                    throw error
                }
                let t = now()
                next = locked { $0.membership?.joined(resp, now: t) ?? [] }
            case .computeAssignment(let name, let subs):
                guard let assignor = config.assignors.first(where: { $0.name == name }) else {
                    locked { $0.membership?.joinFailed() }
                    throw KafkaClientError.invalidArgument("the group chose assignor \(name) which this consumer did not offer")
                }
                var counts: [TopicName: Int32] = [:]
                do {
                    let topics = Set(subs.values.flatMap { $0.topics }).map { TopicName($0) }
                    for info in try await cluster.refreshMetadata(topics: topics) where info.error == .none {
                        counts[info.name] = Int32(info.partitions.count)
                    }
                } catch {
                    locked { $0.membership?.joinFailed() }
                    throw error
                }
                let plan = assignor.assign(members: subs, partitions: counts)
                next = locked { $0.membership?.assigned(plan) ?? [] }
            case .sendSync(let req):
                let resp: SyncGroupResponse
                do {
                    let conn = try await cluster.coordinator(for: g)
                    resp = try await conn.send(req, version: try conn.version(for: SyncGroupRequest.self, max: 5))
                } catch {
                    locked { $0.membership?.joinFailed() }
                    throw error
                }
                let t = now()
                next = locked { $0.membership?.synced(resp, now: t) ?? [] }
                if case .stable? = locked({ $0.membership?.phase }) {
                    logger.debug("joined group", metadata: ["group": "\(g)", "generation": "\(locked { $0.membership?.generation ?? -1 })"])
                }
            case .commitBeforeRevoke(let tps):
                let set = Set(tps)
                let offsets = handedPositions.filter { set.contains($0.key) }
                do { try await commit(offsets) } catch {
                    logger.debug("commit before revocation failed", metadata: ["error": "\(error)"])
                }
            case .revoke(let tps, let lost):
                let set = Set(tps)
                locked { s in
                    s.assignment.removeAll { set.contains($0) }
                    s.positions = s.positions.filter { !set.contains($0.key) }
                    s.pendingSeeks = s.pendingSeeks.filter { !set.contains($0.key) }
                    s.prefetch = nil
                }
                if lost { logger.info("partitions lost to another member", metadata: ["group": "\(g)", "partitions": "\(tps.count)"]) }
                revoked += tps
            case .assign(let tps):
                locked { s in
                    for tp in tps where !s.assignment.contains(tp) {
                        s.assignment.append(tp)
                        s.pendingSeeks[tp] = .committedOrReset
                    }
                    s.assignment.sort()
                }
                added += tps
            case .sendLeave(let req):
                if let conn = try? await cluster.coordinator(for: g), let v = try? conn.version(for: LeaveGroupRequest.self, max: 4) {
                    _ = try? await conn.send(req, version: v)
                }
            case .fail(let e):
                throw e
            }
            queue = next + queue
        }
    }

    private func startHeartbeats() {
        let task = Task { [weak self] in
            while !Task.isCancelled {
                guard let self else { return }
                let t = self.now()
                let (hb, wakeAt) = self.locked { s -> (HeartbeatRequest?, Int64) in
                    let hb = s.membership?.heartbeat(now: t)
                    return (hb, s.membership?.nextHeartbeatAtMs ?? .max)
                }
                if let hb, let g = self.config.groupID {
                    var code: ErrorCode?
                    do {
                        let conn = try await self.cluster.coordinator(for: g)
                        code = try await conn.send(hb, version: try conn.version(for: HeartbeatRequest.self, max: 4)).errorCode
                    } catch {
                        // Connection trouble: try again next interval; the session timeout decides.
                    }
                    let answered = self.now()
                    self.locked { s in
                        if let fatal = s.membership?.heartbeatAnswered(code, now: answered) { s.fatal = fatal }
                    }
                    continue
                }
                // Sleep until the next heartbeat is due (at most one interval: a rebalance may start one).
                let pause = max(10, min(self.config.heartbeatIntervalMs, wakeAt == .max ? self.config.heartbeatIntervalMs : wakeAt - t))
                try? await Task.sleep(for: .milliseconds(pause))
            }
        }
        locked { $0.heartbeats = task }
    }

    // MARK: - Fetching

    /// Returns the records of one round of fetches and starts the next round before returning.
    private func fetchOnce(maxWait: Int32) async throws -> [ConsumerRecord] {
        let results: FetchResults
        if let p = locked({ s -> Task<FetchResults, Error>? in defer { s.prefetch = nil }; return s.prefetch }) {
            results = try await p.value
        } else {
            guard let t = try await startFetch(maxWait: maxWait) else { return [] }
            results = try await t.value
        }
        let records = try locked { try process(results, &$0) }
        let next = try? await startFetch(maxWait: config.fetchMaxWaitMs)
        locked { $0.prefetch = next }
        return records
    }

    /// Sends one fetch per leader of the assigned partitions (concurrently) from the current positions.
    private func startFetch(maxWait: Int32) async throws -> Task<FetchResults, Error>? {
        let (ready, snapshot) = locked { s in (s.assignment.filter { s.positions[$0] != nil }, s.positions) }
        guard !ready.isEmpty else { return nil }
        var byLeader: [BrokerID: [TopicPartition]] = [:]
        for tp in ready {
            let t = try await cluster.topic(tp.topic)
            guard let p = t.partitions.first(where: { $0.partition == tp.partition }) else { continue }
            byLeader[p.leader, default: []].append(tp)
        }
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
    private func process(_ results: FetchResults, _ s: inout State) throws -> [ConsumerRecord] {
        var out: [ConsumerRecord] = []
        out.reserveCapacity(1024)
        for (resp, snapshot) in results {
            if resp.errorCode != .none { throw KafkaClientError.broker(resp.errorCode, "Fetch") }
            for t in resp.responses {
                for p in t.partitions {
                    let tp = TopicPartition(t.topic, p.partitionIndex)
                    guard let position = s.positions[tp], position == snapshot[tp], s.assignment.contains(tp) else { continue }
                    switch p.errorCode {
                    case .none:
                        break
                    case .offsetOutOfRange:
                        s.pendingSeeks[tp] = .reset
                        s.positions[tp] = nil
                        continue
                    case .notLeaderOrFollower, .leaderNotAvailable, .unknownTopicOrPartition, .fencedLeaderEpoch, .unknownLeaderEpoch:
                        cluster.invalidate(tp.topic)
                        continue
                    default:
                        throw KafkaClientError.broker(p.errorCode, "Fetch \(tp)")
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
                    s.positions[tp] = next
                }
            }
        }
        return out
    }

    // MARK: - Seeks and resets

    private func resolveSeeks() async throws {
        let seeks: [TopicPartition: PendingSeek] = locked { s in
            let mine = s.pendingSeeks.filter { s.assignment.contains($0.key) }
            s.pendingSeeks = s.pendingSeeks.filter { !s.assignment.contains($0.key) }
            return mine
        }
        guard !seeks.isEmpty else { return }
        let admin = KafkaAdmin(cluster: cluster)
        var committed: [TopicPartition: Int64] = [:]
        let needCommitted = seeks.filter { $0.value == .committedOrReset }.map(\.key)
        if let g = config.groupID, !needCommitted.isEmpty {
            do {
                committed = try await admin.groupOffsets(g, partitions: needCommitted)
            } catch {
                locked { s in for (tp, p) in seeks where s.pendingSeeks[tp] == nil { s.pendingSeeks[tp] = p } }
                throw error
            }
        }
        var found: [TopicPartition: Int64] = [:]
        var byKind: [SeekTarget: [TopicPartition]] = [:]
        for (tp, pending) in seeks {
            switch pending {
            case .target(.offset(let o)):
                found[tp] = o
            case .target(let t):
                byKind[t, default: []].append(tp)
            case .committedOrReset:
                if let c = committed[tp] {
                    found[tp] = c
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
            for (tp, o) in try await admin.listOffsets(tps, spec) { found[tp] = o }
        }
        locked { s in
            // A seek or revocation while the lookups ran wins over what they found.
            for (tp, o) in found where s.assignment.contains(tp) && s.pendingSeeks[tp] == nil { s.positions[tp] = o }
        }
    }

    /// Where `auto.offset.reset` puts a partition without a valid position; `.none` refuses.
    private func resetTarget(_ tp: TopicPartition, _ why: String) throws -> SeekTarget {
        switch config.autoOffsetReset {
        case .earliest: return .earliest
        case .latest: return .latest
        case .none:
            // Keep the partition waiting for an explicit seek rather than guessing.
            locked { $0.pendingSeeks[tp] = .reset }
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
        let (generation, memberID, instance, grouped) = locked { s in
            (s.membership?.generation ?? -1, s.membership?.memberID ?? "", s.membership?.settings.instanceID, s.membership != nil)
        }
        let conn = try await cluster.coordinator(for: g)
        var req = OffsetCommitRequest()
        req.groupID = g
        req.generationIDOrMemberEpoch = generation
        req.memberID = memberID
        req.groupInstanceID = instance
        var byTopic: [TopicName: [OffsetCommitRequest.OffsetCommitRequestPartition]] = [:]
        for (tp, o) in toCommit.sorted(by: { $0.key < $1.key }) {
            byTopic[tp.topic, default: []].append(.init(partitionIndex: tp.partition, committedOffset: o, committedMetadata: ""))
        }
        req.topics = byTopic.map { .init(name: $0.key, partitions: $0.value) }
        let resp = try await conn.send(req, version: try conn.version(for: OffsetCommitRequest.self, max: 8))
        let codes = resp.topics.flatMap { $0.partitions.map(\.errorCode) }
        if grouped, let fatal = locked({ $0.membership?.commitAnswered(codes) }) { locked { $0.fatal = fatal } }
        for t in resp.topics {
            for p in t.partitions where p.errorCode != .none {
                throw KafkaClientError.broker(p.errorCode, "OffsetCommit \(t.name)-\(p.partitionIndex)")
            }
        }
        let t = now()
        locked { s in
            for (tp, o) in toCommit { s.committedPositions[tp] = o }
            s.lastCommitMs = t
        }
    }

    private func maybeAutoCommit() async throws {
        guard config.enableAutoCommit, config.groupID != nil else { return }
        let t = now()
        let (due, committed) = locked { ($0.lastCommitMs + config.autoCommitIntervalMs <= t, $0.committedPositions) }
        guard due else { return }
        let changed = handedPositions.filter { committed[$0.key] != $0.value }
        guard !changed.isEmpty else { locked { $0.lastCommitMs = t }; return }
        do {
            try await commit(changed)
        } catch {
            logger.debug("auto-commit failed; will retry", metadata: ["error": "\(error)"])
        }
    }

    /// Commits (with auto-commit), leaves the group and stops heartbeating.
    public func close() async {
        let (wasClosed, heartbeats, prefetch, manual) = locked { s -> (Bool, Task<Void, Never>?, Task<FetchResults, Error>?, Bool) in
            defer { s.closed = true; s.heartbeats = nil; s.prefetch = nil }
            return (s.closed, s.heartbeats, s.prefetch, s.membership == nil)
        }
        guard !wasClosed else { return }
        heartbeats?.cancel()
        prefetch?.cancel()
        if manual {
            if config.enableAutoCommit, config.groupID != nil, !handedPositions.isEmpty { try? await commit(handedPositions) }
            let revoked = locked { s -> [TopicPartition] in defer { s.assignment = [] }; return s.assignment }
            if !revoked.isEmpty, let listener = locked({ $0.rebalanceListener }) { listener(revoked, []) }
            return
        }
        let actions = locked { $0.membership?.leave() ?? [] }
        try? await perform(actions)
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
