import Foundation
import KafkaProtocol
import Logging
import LogStorage
import NIOConcurrencyHelpers
import NIOCore

/// Runs the consumer groups whose `__consumer_offsets` partitions this broker leads (all of them
/// on a single node).
///
/// Each group is a ``GroupStateMachine`` plus its committed offsets. All of it is guarded by one
/// lock; parked JoinGroup/SyncGroup requests are promises completed after the lock is released.
/// Group snapshots and commits are appended to `__consumer_offsets` while the lock is held (so
/// the log order is the decision order); commits are answered only after an fsync.
/// Deadlines (session expiry, end of a join phase) are timers on one event loop, re-armed after
/// every change to the group, so nothing polls.
public final class GroupCoordinator: @unchecked Sendable {
    public static let topicName: TopicName = "__consumer_offsets"

    public struct Settings: Sendable {
        public var offsetsTopicPartitions: Int32 = 50
        public var offsetsRetentionMs: Int64 = 7 * 24 * 3_600_000
        public var offsetsRetentionCheckIntervalMs: Int64 = 600_000
        public var offsetMetadataMaxBytes = 4096
        public var group = GroupStateMachine.Settings()
        public init() {}
    }

    final class Entry {
        var machine: GroupStateMachine
        var offsets: [TopicPartition: CommittedOffset] = [:]
        var pendingJoins: [String: EventLoopPromise<GroupStateMachine.JoinResult>] = [:]
        var pendingSyncs: [String: EventLoopPromise<GroupStateMachine.SyncResult>] = [:]
        var timer: Scheduled<Void>?
        var timerDeadline: Int64?

        init(machine: GroupStateMachine) {
            self.machine = machine
        }
    }

    private let logs: LogManager
    private let logger: Logger
    public let settings: Settings
    private let timerLoop: EventLoop
    private let lock = NIOLock()
    private var groups: [GroupID: Entry] = [:]
    private let clock: @Sendable () -> Int64

    public init(logs: LogManager, settings: Settings, timerLoop: EventLoop, logger: Logger,
                clock: @escaping @Sendable () -> Int64 = { currentTimeMillis() }) throws {
        self.logs = logs
        self.settings = settings
        self.timerLoop = timerLoop
        self.logger = logger
        self.clock = clock
        if logs.topic(Self.topicName) == nil {
            try logs.createTopic(Self.topicName, partitions: settings.offsetsTopicPartitions, replicationFactor: 1,
                                 configs: ["cleanup.policy": "compact", "segment.bytes": "104857600"], isInternal: true)
        }
        try load()
    }

    private var partitionCount: Int32 { logs.topic(Self.topicName)?.record.partitions ?? settings.offsetsTopicPartitions }

    private func partition(for group: GroupID) -> Partition? {
        logs.partition(Self.topicName, group.offsetsPartition(count: partitionCount))
    }

    // MARK: - Loading

    /// Replays `__consumer_offsets` into memory.
    private func load() throws {
        let started = clock()
        var snapshots: [GroupID: GroupStateMachine.Snapshot] = [:]
        var offsets: [GroupID: [TopicPartition: CommittedOffset]] = [:]
        var records = 0
        var skipped = 0
        for p in 0..<partitionCount {
            guard let log = logs.log(Self.topicName, p) else { continue }
            var next = log.offsets.logStartOffset
            while true {
                let r = try log.read(offset: next, maxBytes: 4 << 20)
                guard let slice = r.slice else { break }
                let bytes = try slice.file.read(at: slice.position, length: slice.length)
                let batches = RecordBatch.batches(in: bytes)
                guard !batches.isEmpty else { break }
                for (h, i) in batches {
                    next = h.nextOffset
                    guard !h.isControl else { continue }
                    let batchRecords: [Record]
                    do {
                        batchRecords = try RecordBatch.records(in: bytes, at: i)
                    } catch {
                        skipped += Int(h.recordsCount)
                        logger.warning("skipping an unreadable batch of __consumer_offsets",
                                       metadata: ["partition": "\(p)", "offset": "\(h.baseOffset)", "error": "\(error)"])
                        continue
                    }
                    for rec in batchRecords {
                        guard let key = rec.key else { skipped += 1; continue }
                        let decoded: OffsetsTopicRecord
                        do {
                            guard let d = try OffsetsTopicRecord.decode(key: key, value: rec.value) else { continue }
                            decoded = d
                        } catch {
                            skipped += 1
                            logger.warning("skipping an undecodable __consumer_offsets record",
                                           metadata: ["partition": "\(p)", "offset": "\(rec.offset)", "error": "\(error)"])
                            continue
                        }
                        records += 1
                        switch decoded {
                        case .offset(let g, let t, let part, let c):
                            offsets[g, default: [:]][TopicPartition(t, part)] = c
                        case .group(let g, let s):
                            snapshots[g] = s
                            if s == nil { offsets[g] = [:] }
                        }
                    }
                }
            }
        }
        let now = clock()
        for g in Set(snapshots.keys).union(offsets.keys) {
            let committed = (offsets[g] ?? [:]).compactMapValues { $0 }
            let machine: GroupStateMachine
            if let s = snapshots[g] ?? nil {
                machine = GroupStateMachine(groupID: g, settings: settings.group, snapshot: s, now: now)
            } else if !committed.isEmpty {
                machine = GroupStateMachine(groupID: g, settings: settings.group, now: now)
            } else {
                continue
            }
            let e = Entry(machine: machine)
            e.offsets = committed
            groups[g] = e
            rescheduleLocked(g, e)
        }
        if records > 0 || skipped > 0 {
            logger.info("loaded consumer groups", metadata: ["groups": "\(groups.count)", "records": "\(records)",
                                                             "skipped": "\(skipped)", "ms": "\(clock() - started)"])
        }
    }

    // MARK: - Outputs

    private struct Deliveries {
        var joins: [(EventLoopPromise<GroupStateMachine.JoinResult>, GroupStateMachine.JoinResult)] = []
        var syncs: [(EventLoopPromise<GroupStateMachine.SyncResult>, GroupStateMachine.SyncResult)] = []

        func run() {
            for (p, r) in joins { p.succeed(r) }
            for (p, r) in syncs { p.succeed(r) }
        }
    }

    /// Turns state machine outputs into promise completions and log appends. Lock held.
    private func apply(_ outputs: [GroupStateMachine.GroupOutput], _ g: GroupID, _ e: Entry, _ d: inout Deliveries) {
        var persist = false
        for o in outputs {
            switch o {
            case .join(let id, let r):
                if let p = e.pendingJoins.removeValue(forKey: id) { d.joins.append((p, r)) }
            case .sync(let id, let r):
                if let p = e.pendingSyncs.removeValue(forKey: id) { d.syncs.append((p, r)) }
            case .persist:
                persist = true
            }
        }
        if persist {
            let snap: GroupStateMachine.Snapshot? = e.machine.phase == .dead ? nil : e.machine.snapshot
            _ = appendLocked(g, [.group(g, snap)])
            logger.info("group changed", metadata: ["group": "\(g)", "state": "\(e.machine.phase.rawValue)",
                                                    "generation": "\(e.machine.generation)", "members": "\(e.machine.members.count)",
                                                    "protocol": "\(e.machine.protocolName ?? "-")"])
        }
        rescheduleLocked(g, e)
    }

    /// Appends records for `g` to its `__consumer_offsets` partition. Lock held.
    @discardableResult
    private func appendLocked(_ g: GroupID, _ records: [OffsetsTopicRecord]) -> (Partition, Int64)? {
        guard let partition = partition(for: g), !records.isEmpty else { return nil }
        var b = RecordBatchBuilder(capacity: 256 * records.count)
        let now = clock()
        do {
            for r in records {
                let (k, v) = try r.encode()
                b.append(key: k, value: v, timestamp: now)
            }
            // A roll here is rare: housekeeping rolls nearly full segments ahead of need.
            let result = try partition.append(try b.build(), nowMs: now, allowRoll: true)
            return (partition, result.lastOffset + 1)
        } catch {
            logger.error("cannot write to __consumer_offsets", metadata: ["group": "\(g)", "error": "\(error)"])
            return nil
        }
    }

    private func rescheduleLocked(_ g: GroupID, _ e: Entry) {
        let deadline = e.machine.nextDeadline
        if deadline == e.timerDeadline { return }
        e.timer?.cancel()
        e.timerDeadline = deadline
        guard let deadline else { e.timer = nil; return }
        let delay = max(0, deadline - clock())
        e.timer = timerLoop.scheduleTask(in: .milliseconds(delay)) { [weak self] in self?.fire(g) }
    }

    private func fire(_ g: GroupID) {
        var d = Deliveries()
        lock.withLock {
            guard let e = groups[g] else { return }
            e.timerDeadline = nil
            let before = e.machine.members.count
            let outputs = e.machine.tick(now: clock())
            if e.machine.members.count < before {
                logger.info("members expired after their session timeout", metadata: ["group": "\(g)", "expired": "\(before - e.machine.members.count)"])
            }
            apply(outputs, g, e, &d)
        }
        d.run()
    }

    private func entryLocked(_ g: GroupID, create: Bool) -> Entry? {
        if let e = groups[g] { return e }
        guard create else { return nil }
        let e = Entry(machine: GroupStateMachine(groupID: g, settings: settings.group, now: clock()))
        groups[g] = e
        return e
    }

    // MARK: - Join / Sync / Heartbeat / Leave

    public func join(_ g: GroupID, _ req: GroupStateMachine.JoinRequest, on loop: EventLoop) -> EventLoopFuture<GroupStateMachine.JoinResult> {
        var d = Deliveries()
        let future: EventLoopFuture<GroupStateMachine.JoinResult> = lock.withLock {
            guard let e = entryLocked(g, create: req.memberID.isEmpty) else {
                var r = GroupStateMachine.JoinResult()
                r.error = .unknownMemberID
                r.memberID = req.memberID
                return loop.makeSucceededFuture(r)
            }
            let (outcome, outputs) = e.machine.join(req, now: clock())
            let f: EventLoopFuture<GroupStateMachine.JoinResult>
            switch outcome {
            case .now(let r):
                f = loop.makeSucceededFuture(r)
            case .parked(let id):
                let p = loop.makePromise(of: GroupStateMachine.JoinResult.self)
                if let old = e.pendingJoins.updateValue(p, forKey: id) {
                    var r = GroupStateMachine.JoinResult()
                    r.error = .rebalanceInProgress
                    r.memberID = id
                    d.joins.append((old, r))
                }
                f = p.futureResult
            }
            apply(outputs, g, e, &d)
            return f
        }
        d.run()
        return future
    }

    public func sync(_ g: GroupID, memberID: String, groupInstanceID: String?, generation: Int32, protocolType: String?,
                     protocolName: String?, assignments: [String: ByteBuffer]?, on loop: EventLoop) -> EventLoopFuture<GroupStateMachine.SyncResult> {
        var d = Deliveries()
        let future: EventLoopFuture<GroupStateMachine.SyncResult> = lock.withLock {
            guard let e = groups[g] else {
                return loop.makeSucceededFuture(.init(error: .unknownMemberID))
            }
            let (outcome, outputs) = e.machine.sync(memberID: memberID, groupInstanceID: groupInstanceID, generation: generation,
                                                    protocolType: protocolType, protocolName: protocolName,
                                                    assignments: assignments, now: clock())
            let f: EventLoopFuture<GroupStateMachine.SyncResult>
            switch outcome {
            case .now(let r):
                f = loop.makeSucceededFuture(r)
            case .parked:
                let p = loop.makePromise(of: GroupStateMachine.SyncResult.self)
                if let old = e.pendingSyncs.updateValue(p, forKey: memberID) {
                    d.syncs.append((old, .init(error: .rebalanceInProgress)))
                }
                f = p.futureResult
            }
            apply(outputs, g, e, &d)
            return f
        }
        d.run()
        return future
    }

    public func heartbeat(_ g: GroupID, memberID: String, groupInstanceID: String?, generation: Int32) -> ErrorCode {
        var d = Deliveries()
        let code: ErrorCode = lock.withLock {
            guard let e = groups[g] else { return .unknownMemberID }
            let c = e.machine.heartbeat(memberID: memberID, groupInstanceID: groupInstanceID, generation: generation, now: clock())
            apply([], g, e, &d)
            return c
        }
        d.run()
        return code
    }

    public func leave(_ g: GroupID, _ members: [(memberID: String, instanceID: String?)]) -> (ErrorCode, [ErrorCode]) {
        var d = Deliveries()
        let result: (ErrorCode, [ErrorCode]) = lock.withLock {
            guard let e = groups[g] else { return (.none, members.map { _ in .unknownMemberID }) }
            let (errors, outputs) = e.machine.leave(members, now: clock())
            apply(outputs, g, e, &d)
            return (.none, errors)
        }
        d.run()
        return result
    }

    // MARK: - Offsets

    public struct CommitRequest: Sendable {
        public var memberID: String
        public var groupInstanceID: String?
        public var generation: Int32
        public var offsets: [(TopicPartition, CommittedOffset)]
    }

    /// Validates and stores a commit; the future completes after the commit is on stable storage.
    /// Returns one error per offset, in order.
    public func commit(_ g: GroupID, _ req: CommitRequest, on loop: EventLoop) -> EventLoopFuture<[ErrorCode]> {
        var d = Deliveries()
        let (codes, flush): ([ErrorCode], (Partition, Int64)?) = lock.withLock {
            let standalone = req.generation < 0 && req.memberID.isEmpty
            guard let e = entryLocked(g, create: standalone) else {
                return (req.offsets.map { _ in ErrorCode.unknownMemberID }, nil)
            }
            let verdict = e.machine.validateCommit(memberID: req.memberID, groupInstanceID: req.groupInstanceID,
                                                   generation: req.generation, now: clock())
            guard verdict == .none else { return (req.offsets.map { _ in verdict }, nil) }
            var codes: [ErrorCode] = []
            var records: [OffsetsTopicRecord] = []
            var accepted: [(TopicPartition, CommittedOffset)] = []
            for (tp, c) in req.offsets {
                if c.metadata.utf8.count > min(settings.offsetMetadataMaxBytes, GroupFieldLimits.maxStringBytes) {
                    codes.append(.offsetMetadataTooLarge)
                } else if logs.log(tp.topic, tp.partition) == nil {
                    codes.append(.unknownTopicOrPartition)
                } else {
                    codes.append(.none)
                    records.append(.offset(group: g, topic: tp.topic, partition: tp.partition, c))
                    accepted.append((tp, c))
                }
            }
            let written = appendLocked(g, records)
            if written == nil && !records.isEmpty {
                return (codes.map { $0 == .none ? .coordinatorNotAvailable : $0 }, nil)
            }
            for (tp, c) in accepted { e.offsets[tp] = c }
            apply([], g, e, &d)
            return (codes, written)
        }
        d.run()
        guard let (partition, upTo) = flush else { return loop.makeSucceededFuture(codes) }
        return partition.flush(upTo: upTo, on: loop).map { codes }.flatMapErrorThrowing { _ in
            codes.map { $0 == .none ? .kafkaStorageError : $0 }
        }
    }

    /// Committed offsets of a group; `partitions` nil means every partition with a commit.
    public func fetchOffsets(_ g: GroupID, _ partitions: [TopicPartition]?) -> [TopicPartition: CommittedOffset] {
        lock.withLock {
            guard let e = groups[g] else { return [:] }
            guard let partitions else { return e.offsets }
            var out: [TopicPartition: CommittedOffset] = [:]
            for tp in partitions { out[tp] = e.offsets[tp] }
            return out
        }
    }

    // MARK: - Administration

    public struct GroupSummary: Sendable {
        public var groupID: GroupID
        public var phase: GroupStateMachine.Phase
        public var protocolType: String
        public var protocolName: String
        public var members: [GroupStateMachine.Member]
    }

    public func listGroups() -> [GroupSummary] {
        lock.withLock { groups.map { summaryLocked($0.key, $0.value) } }.sorted { $0.groupID.rawValue < $1.groupID.rawValue }
    }

    public func describe(_ g: GroupID) -> GroupSummary? {
        lock.withLock { groups[g].map { summaryLocked(g, $0) } }
    }

    private func summaryLocked(_ g: GroupID, _ e: Entry) -> GroupSummary {
        GroupSummary(groupID: g, phase: e.machine.phase, protocolType: e.machine.protocolType ?? "",
                     protocolName: e.machine.phase == .stable || e.machine.phase == .completingRebalance ? e.machine.protocolName ?? "" : "",
                     members: Array(e.machine.members.values))
    }

    /// Deletes an empty group and all its offsets.
    public func deleteGroup(_ g: GroupID) -> ErrorCode {
        var d = Deliveries()
        let code: ErrorCode = lock.withLock {
            guard let e = groups[g], e.machine.phase != .dead else { return .groupIDNotFound }
            guard e.machine.isEmpty else { return .nonEmptyGroup }
            var records: [OffsetsTopicRecord] = e.offsets.keys.sorted().map { .offset(group: g, topic: $0.topic, partition: $0.partition, nil) }
            records.append(.group(g, nil))
            appendLocked(g, records)
            let outputs = e.machine.markDead(now: clock())
            e.timer?.cancel()
            groups[g] = nil
            apply(outputs.filter { $0 != .persist }, g, e, &d)
            logger.info("deleted group", metadata: ["group": "\(g)"])
            return .none
        }
        d.run()
        return code
    }

    /// Deletes committed offsets; refused per partition while the group is subscribed to the topic.
    public func deleteOffsets(_ g: GroupID, _ partitions: [TopicPartition]) -> (ErrorCode, [ErrorCode]) {
        lock.withLock {
            guard let e = groups[g] else { return (.groupIDNotFound, []) }
            let subscribed = subscribedTopicsLocked(e)
            var records: [OffsetsTopicRecord] = []
            var codes: [ErrorCode] = []
            for tp in partitions {
                if subscribed.contains(tp.topic) {
                    codes.append(.groupSubscribedToTopic)
                } else {
                    codes.append(.none)
                    if e.offsets.removeValue(forKey: tp) != nil {
                        records.append(.offset(group: g, topic: tp.topic, partition: tp.partition, nil))
                    }
                }
            }
            appendLocked(g, records)
            return (.none, codes)
        }
    }

    /// Topics the group's members subscribe to (consumer protocol only).
    private func subscribedTopicsLocked(_ e: Entry) -> Set<TopicName> {
        guard e.machine.protocolType == "consumer", !e.machine.members.isEmpty else { return [] }
        var topics = Set<TopicName>()
        for m in e.machine.members.values {
            for p in m.protocols {
                guard let sub = try? ConsumerProtocolSubscription.decode(p.metadata) else { continue }
                topics.formUnion(sub.topics.map { TopicName($0) })
            }
        }
        return topics
    }

    /// Removes offsets of empty groups older than `offsets.retention.ms`, and groups left with nothing.
    @discardableResult
    public func expireOffsets() -> Int {
        let now = clock()
        var expired = 0
        lock.withLock {
            for (g, e) in groups where e.machine.phase == .empty {
                let usedProtocol = e.machine.protocolType != nil
                var records: [OffsetsTopicRecord] = []
                for (tp, c) in e.offsets {
                    let base = usedProtocol ? (e.machine.emptySince ?? c.commitTimestamp) : c.commitTimestamp
                    if elapsedMs(since: base, now: now) >= settings.offsetsRetentionMs {
                        e.offsets[tp] = nil
                        records.append(.offset(group: g, topic: tp.topic, partition: tp.partition, nil))
                    }
                }
                expired += records.count
                if e.offsets.isEmpty && e.machine.isEmpty {
                    records.append(.group(g, nil))
                    e.timer?.cancel()
                    groups[g] = nil
                }
                appendLocked(g, records)
            }
        }
        if expired > 0 { logger.info("expired committed offsets", metadata: ["offsets": "\(expired)"]) }
        return expired
    }
}
