import KafkaClient
import KafkaProtocol
import KafkaWire
import NIOCore

extension FlowMirror {
    // MARK: Fetching from the source

    /// Keeps up to `fetchSessionsPerBroker` fetches in flight per source leader: each partition
    /// belongs to one fetch session of its leader (its own connection), and a session's fetch asks
    /// for its partitions whose lanes have room. A session's fetch long-polls only when none of its
    /// partitions waits for room: otherwise the connection would be held by a wait while a
    /// partition with records behind it becomes free again. Sessions do not wait for each other.
    /// Rounds run when a fetch completes, a lane gets room or a writer restarts, and every 100 ms
    /// (new lanes, leader changes). Each partition asks for as many bytes as its lane's fetch
    /// size, which grows while fetches come back full, so one partition fills a long round trip.
    func fetchLoop() async {
        let wakeup = fetchWakeup
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(100))
                    wakeup.signal()
                }
            }
            while !Task.isCancelled {
                for (session, slots, maxWait) in await fetchRound() {
                    group.addTask {
                        await self.fetch(session, slots, maxWaitMs: maxWait)
                        self.lock.withLock {
                            self.fetchingSessions.remove(session)
                            for s in slots { self.fetchingLanes[s.lane.source] = nil }
                        }
                        wakeup.signal()
                    }
                }
                await wakeup.wait()
            }
        }
    }

    /// The fetches to start now, marked as in flight: per idle session, its lanes with room, and
    /// the long-poll wait that session's fetch may use.
    private func fetchRound() async -> [(FetchSession, [FetchSlot], Int32)] {
        let (all, busySessions, busyLanes) = lock.withLock { (Array(lanes.values), fetchingSessions, fetchingLanes) }
        // Memory: the fetch responses still held (queued or being written) plus what the fetches
        // in flight may bring.
        var budget = settings.bufferBytes - lock.withLock { heldResponseBytes } - busyLanes.values.reduce(0) { $0 + Int($1) }
        var ready: [FetchSession: [FetchSlot]] = [:]
        var behind = Set<FetchSession>()  // sessions with records waiting that some lane has no room for
        var moving = Set<FetchSession>()  // sessions with a ready lane that is not caught up
        var limited = false
        var candidates: [(lane: PartitionLane, state: PartitionLane.FetchState, session: FetchSession)] = []
        for lane in all where busyLanes[lane.source] == nil {
            let state = lane.fetchState
            if case .idle = state { continue }
            guard let info = try? await source.topic(lane.source.topic),
                  let p = info.partitions.first(where: { $0.partition == lane.source.partition }), p.leader.rawValue >= 0
            else { continue }
            let session = FetchSession(leader: p.leader, index: lane.spreadIndex(of: settings.fetchSessionsPerBroker))
            guard !busySessions.contains(session) else { continue }
            candidates.append((lane, state, session))
        }
        // Partitions with records to fetch get the budget first: caught-up ones only poll.
        func polls(_ s: PartitionLane.FetchState) -> Bool {
            if case .ready(_, _, let caughtUp) = s { return caughtUp }
            return false
        }
        candidates.sort { !polls($0.state) && polls($1.state) }
        for (lane, state, session) in candidates {
            guard case .ready(let position, let generation, let caughtUp) = state, budget > 0 else {
                behind.insert(session)
                if case .ready = state { limited = true }
                continue
            }
            let bytes = max(lane.fetchBytes, settings.partitionFetchBytes)
            ready[session, default: []].append(FetchSlot(lane: lane, position: position, generation: generation, maxBytes: bytes))
            if !caughtUp { moving.insert(session) }
            budget -= Int(bytes)
        }
        var starts: [(FetchSession, [FetchSlot], Int32)] = []
        for (session, slots) in ready {
            // Every ready lane is caught up and another waits for room: fetching now would only
            // poll; the round that room brings fetches them all.
            if behind.contains(session) && !moving.contains(session) { continue }
            starts.append((session, slots, behind.contains(session) ? 0 : settings.fetchMaxWaitMs))
        }
        lock.withLock {
            fetchBudgetLimited = limited
            for (session, slots, _) in starts {
                fetchingSessions.insert(session)
                for s in slots { fetchingLanes[s.lane.source] = s.maxBytes }
            }
        }
        return starts
    }

    /// The last chunk of a fetch response was written (or dropped): its memory is free again.
    func responseReleased(_ bytes: Int) {
        let limited = lock.withLock {
            heldResponseBytes -= bytes
            return fetchBudgetLimited
        }
        if limited { fetchWakeup.signal() }
    }

    /// A lane took a chunk or restarted: when that may let a fetch start, run a round.
    func laneChanged(room: Bool) {
        if room || lock.withLock({ fetchBudgetLimited }) { fetchWakeup.signal() }
    }

    /// One of a source leader's fetch connections, with the partitions assigned to it.
    struct FetchSession: Hashable {
        var leader: BrokerID
        var index: Int
    }

    struct FetchSlot {
        var lane: PartitionLane
        var position: Int64
        var generation: Int
        var maxBytes: Int32
    }

    private func fetch(_ session: FetchSession, _ slots: [FetchSlot], maxWaitMs: Int32) async {
        let resp: FetchResponse
        do {
            let conn = try await source.connection(to: session.leader, for: .fetch, index: session.index)
            var req = FetchRequest()
            req.replicaID = -1
            req.maxWaitMs = maxWaitMs
            req.minBytes = 1
            req.maxBytes = settings.fetchMaxBytes
            req.isolationLevel = 1
            var byTopic: [TopicName: [FetchRequest.FetchPartition]] = [:]
            for s in slots {
                byTopic[s.lane.source.topic, default: []].append(.init(partition: s.lane.source.partition, fetchOffset: s.position,
                                                                        partitionMaxBytes: s.maxBytes))
            }
            req.topics = byTopic.map { .init(topic: $0.key, partitions: $0.value) }
            resp = try await conn.send(req, version: try conn.version(for: FetchRequest.self, max: 12),
                                       timeout: .milliseconds(Int64(settings.fetchMaxWaitMs) + 30_000))
            guard resp.errorCode == .none else { throw KafkaClientError.broker(resp.errorCode, "Fetch") }
        } catch {
            if Task.isCancelled { return }
            logger.warning("fetch from the source failed; reconnecting", metadata: ["broker": "\(session.leader)", "error": "\(error)"])
            for s in slots {
                source.invalidate(s.lane.source.topic)
                s.lane.sourceReachable(false)
            }
            try? await Task.sleep(for: settings.backoff)
            return
        }
        var bySlot: [TopicPartition: FetchSlot] = [:]
        for s in slots {
            bySlot[s.lane.source] = s
            s.lane.sourceReachable(true)
        }
        let held = resp.responses.reduce(0) { sum, t in
            t.partitions.reduce(sum) { n, p in
                if case .bytes(let b)? = p.records { return n + b.readableBytes }
                return n
            }
        }
        lock.withLock { heldResponseBytes += held }
        let response = PartitionLane.FetchedResponse(bytes: held) { [weak self] bytes in self?.responseReleased(bytes) }
        for t in resp.responses {
            for p in t.partitions {
                guard let slot = bySlot[TopicPartition(t.topic, p.partitionIndex)] else { continue }
                let (lane, position, generation) = (slot.lane, slot.position, slot.generation)
                switch p.errorCode {
                case .none:
                    break
                case .offsetOutOfRange:
                    await outOfRange(lane, position)
                    continue
                default:
                    source.invalidate(t.topic)
                    continue
                }
                var records = ByteBuffer()
                if case .bytes(let b)? = p.records { records = b }
                lane.fetched(records.readableBytes, asked: slot.maxBytes, base: settings.partitionFetchBytes,
                             max: min(Int32(clamping: settings.partitionBufferBytes), settings.fetchMaxBytes))
                do {
                    let aborted = (p.abortedTransactions ?? []).map { BatchConverter.AbortedTransaction(producerID: $0.producerID.rawValue, firstOffset: $0.firstOffset) }
                    let r = try converter.convert(records, from: position, aborted: aborted)
                    var chunk: PartitionLane.Chunk?
                    if !r.outputs.isEmpty {
                        let epoch = (try? await source.topic(t.topic))?.partitions.first { $0.partition == p.partitionIndex }?.leaderEpoch ?? -1
                        chunk = .init(generation: generation, outputs: r.outputs, bytes: r.outputs.reduce(0) { $0 + $1.batch.readableBytes },
                                      epoch: epoch, response: response)
                    }
                    lane.offer(chunk, generation: generation, fetchedAt: position, next: r.nextPosition, highWatermark: p.highWatermark,
                               lastStable: p.lastStableOffset, logStart: p.logStartOffset)
                } catch {
                    logger.error("cannot copy this partition; it is stopped until the mirror restarts",
                                 metadata: ["partition": "\(lane.source)", "offset": "\(position)", "error": "\(error)"])
                    lane.stop("\(error)")
                }
            }
        }
    }

    /// The source no longer has `position`: retention removed records before they were copied
    /// (carry on from the earliest, saying how many were lost), or the source log is shorter than
    /// what was copied (a different history: stop).
    private func outOfRange(_ lane: PartitionLane, _ position: Int64) async {
        let admin = KafkaAdmin(cluster: source)
        guard let earliest = try? await admin.listOffsets([lane.source], .earliest)[lane.source],
              let latest = try? await admin.listOffsets([lane.source], .latest)[lane.source] else { return }
        if position < earliest {
            logger.warning("records were deleted in the source before they were mirrored; continuing from the earliest",
                           metadata: ["partition": "\(lane.source)", "lost": "\(position)..<\(earliest)"])
            lane.move(from: position, to: earliest)
        } else if position > latest {
            let why = "the source log ends at \(latest) but offsets up to \(position) were already copied: the source lost records (unclean leader election or a recreated topic); copying a different history under the same offsets would break translation"
            logger.error("partition stopped", metadata: ["partition": "\(lane.source)", "reason": "\(why)"])
            lane.stop(why)
        }
    }

    // MARK: Writing to the target

    /// The writer of one partition: reconcile, then for each fetched chunk declare its runs and
    /// produce its batches, several in flight. Any failure leads back to reconciling after a pause.
    func writeLoop(_ lane: PartitionLane) async {
        var backoff = settings.backoff
        var declared = lock.withLock { loaded[lane.key]?.map } ?? PartitionOffsetMap()
        // Shared flows: another process may have written this partition since the flow started.
        var reload = settings.groupInstanceID != nil
        if reload {
            try? await Task.sleep(for: settings.takeoverGrace)
        }
        while !lane.isClosed && !Task.isCancelled {
            var writer: PartitionWriter?
            do {
                if reload {
                    declared = try await store.load(flow: flow.name)[lane.key]?.map ?? PartitionOffsetMap()
                    reload = false
                }
                let (map, targetEnd) = try await reconcile(lane, declared)
                declared = map
                try await checkHistory(lane, map)
                var resume: Int64 = 0
                if let end = map.sourceEnd {
                    resume = end
                } else {
                    resume = try await KafkaAdmin(cluster: source).listOffsets([lane.source], .earliest)[lane.source] ?? 0
                }
                if flow.naming == .identity && map.runs.isEmpty && lock.withLock({ loaded[lane.key]?.start }) == nil {
                    // Where a crash before the first mapped batch would have to look.
                    try await store.writeStart(lane.key, targetTopic: lane.target.topic, src: resume, tgt: targetEnd)
                    lock.withLock { loaded[lane.key, default: .init(targetTopic: lane.target.topic, map: map)].start = (resume, targetEnd) }
                }
                let producer = try await initProducerID()
                let conn = try await target.leader(lane.target.topic, lane.target.partition, for: .produce,
                                                   index: lane.spreadIndex(of: settings.produceConnectionsPerBroker))
                let w = PartitionWriter(lane: lane, connection: conn, producer: producer, declared: map, targetEnd: targetEnd,
                                        identity: flow.naming == .identity, store: store, maxInFlight: settings.producesInFlight)
                writer = w
                let generation = lane.restart(at: resume, map: map, targetEnd: targetEnd)
                logger.info("copying partition", metadata: ["partition": "\(lane.source)", "remote": "\(lane.target)",
                                                            "from source offset": "\(resume)", "target offset": "\(targetEnd)"])
                while true {
                    // Nothing queued: confirm what is in flight, one answer at a time, so a chunk
                    // that arrives meanwhile waits for one answer at most.
                    if !lane.hasQueued && w.hasInFlight {
                        try await w.completeOne()
                        continue
                    }
                    guard let chunk = await lane.take() else { break }
                    guard chunk.generation == generation else { continue }
                    // Whatever else is queued goes with it: one store write declares it all.
                    let chunks = [chunk] + lane.takeMore(generation: generation, maxBytes: settings.partitionBufferBytes)
                    try await w.write(chunks)
                    backoff = settings.backoff
                }
                try await w.drain()
                return
            } catch MirrorError.targetMoved(let why) {
                // Another writer of this partition (the previous owner) was still finishing: its
                // intents are in the store by now.
                if let writer { await writer.abandon() }
                if Task.isCancelled || lane.isClosed { return }
                lane.pause()
                reload = true
                logger.warning("the target moved under this writer; reconciling", metadata: ["partition": "\(lane.source)", "reason": "\(why)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, settings.maxBackoff)
            } catch let e as MirrorError {
                logger.error("partition stopped", metadata: ["partition": "\(lane.source)", "remote": "\(lane.target)", "reason": "\(e)"])
                lane.stop("\(e)")
                return
            } catch {
                if let writer {
                    await writer.abandon()
                    declared = writer.declared
                }
                if Task.isCancelled || lane.isClosed { return }
                lane.pause()
                target.invalidate(lane.target.topic)
                logger.warning("writing to the target failed; reconciling with its log end", metadata: [
                    "partition": "\(lane.source)", "remote": "\(lane.target)", "error": "\(error)", "retry in": "\(backoff)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, settings.maxBackoff)
            }
        }
    }

    /// Whether the source still holds the history that was copied. The last run was copied while
    /// the source leader was at `epoch`; OffsetForLeaderEpoch says where that epoch ends in the
    /// source now. Ending before the run does means the source lost those records (an unclean
    /// leader election, a recreated topic) and may have written other ones under the same
    /// offsets: copying on would pair different records with the mapping, so the partition stops.
    /// A source that cannot answer (old version, an error) is not checked.
    func checkHistory(_ lane: PartitionLane, _ map: PartitionOffsetMap) async throws {
        guard let last = map.runs.last, last.epoch >= 0 else { return }
        do {
            let conn = try await source.leader(lane.source.topic, lane.source.partition, for: .admin)
            var req = OffsetForLeaderEpochRequest()
            req.replicaID = -1
            req.topics = [.init(topic: lane.source.topic, partitions: [.init(partition: lane.source.partition, currentLeaderEpoch: -1, leaderEpoch: last.epoch)])]
            let resp = try await conn.send(req, version: try conn.version(for: OffsetForLeaderEpochRequest.self, max: 4))
            guard let p = resp.topics.first?.partitions.first, p.errorCode == .none, p.endOffset >= 0 else { return }
            if p.endOffset < last.srcEnd {
                throw MirrorError.diverged("the source's leader epoch \(last.epoch) now ends at offset \(p.endOffset), but offsets up to \(last.srcEnd - 1) were copied under it: the source lost those records (unclean leader election or a recreated topic) and may hold others under the same offsets. Copying on would pair other records with the mapping. To copy the source's present history from its start, delete \(lane.target.topic) in the target region and restart the mirror")
            }
        } catch let e as MirrorError {
            throw e
        } catch {
            if Task.isCancelled { throw error }
            logger.debug("cannot check the source's history", metadata: ["partition": "\(lane.source)", "error": "\(error)"])
        }
    }

    /// A fresh idempotent producer id for a writer session: the target then refuses a batch whose
    /// predecessor failed, so what lands is always a prefix of what was sent.
    func initProducerID() async throws -> (id: Int64, epoch: Int16) {
        let conn = try await target.anyConnection()
        var req = InitProducerIDRequest()
        req.transactionalID = nil
        req.transactionTimeoutMs = 60_000
        let resp = try await conn.send(req, version: try conn.version(for: InitProducerIDRequest.self, max: 4))
        guard resp.errorCode == .none else { throw KafkaClientError.broker(resp.errorCode, "InitProducerId") }
        return (resp.producerID.rawValue, resp.producerEpoch)
    }

    /// What of `declared` the target really holds: runs past the target's log end are shortened
    /// or dropped (and the store corrected). A target holding records the mapping cannot explain
    /// is an error: something else writes there.
    func reconcile(_ lane: PartitionLane, _ declared: PartitionOffsetMap) async throws -> (PartitionOffsetMap, Int64) {
        target.invalidate(lane.target.topic)
        let end = try await targetEnd(lane.target)
        if flow.naming == .identity {
            // Other producers write the same topic: its end says nothing about the mirror's
            // writes, but the provenance header marks them.
            return (try await recoverIdentity(lane, declared, end), end)
        }
        var map = declared
        let (shortened, removed) = map.truncate(targetEnd: end)
        let explained = map.targetEnd ?? 0
        if end > explained {
            let start = try await KafkaAdmin(cluster: target).listOffsets([lane.target], .earliest)[lane.target] ?? 0
            if map.runs.isEmpty && start == end {
                // Empty log whose earlier records were deleted (a retention-trimmed target): start there.
                return (map, end)
            }
            throw MirrorError.targetNotEmpty("\(lane.target) holds records up to offset \(end) but this flow's mapping explains only \(explained): it was written by something else. Mirror into an empty or new topic (delete \(lane.target) in \(flow.target), or choose prefix naming)")
        }
        if !shortened.isEmpty || !removed.isEmpty {
            logger.info("intents that did not land were withdrawn", metadata: ["partition": "\(lane.source)", "target end": "\(end)",
                                                                             "shortened": "\(shortened.count)", "removed": "\(removed.count)"])
            try await store.write(lane.key, targetTopic: lane.target.topic, runs: shortened, removed: removed)
        }
        return (map, end)
    }

    /// The target partition's log end, read twice until it holds still, so a write the broker
    /// was still applying from a connection that just failed is counted.
    func targetEnd(_ tp: TopicPartition) async throws -> Int64 {
        let admin = KafkaAdmin(cluster: target)
        var last = try await admin.listOffsets([tp], .latest)[tp] ?? 0
        while true {
            try await Task.sleep(for: .milliseconds(50))
            let now = try await admin.listOffsets([tp], .latest)[tp] ?? 0
            if now == last { return now }
            last = now
        }
    }
}
