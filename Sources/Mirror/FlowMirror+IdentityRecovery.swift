import KafkaClient
import KafkaProtocol

extension FlowMirror {
    /// Identity naming stores a batch's mapping after the batch lands (the topic is shared, so its
    /// offsets are known only from the answer); a crash in between leaves records the mapping does
    /// not know. They carry the provenance header with this flow's source as the last hop, and no
    /// other writer puts that there (one flow per region pair), so: find them after the last mapped
    /// target offset, pair them in order with the source records the converter would copy from the
    /// last mapped source offset, and map them — the copy resumes after them instead of again.
    func recoverIdentity(_ lane: PartitionLane, _ declared: PartitionOffsetMap, _ end: Int64) async throws -> PartitionOffsetMap {
        let start = lock.withLock { loaded[lane.key]?.start }
        guard let scanFrom = declared.targetEnd ?? start?.tgt, let sourceFrom = declared.sourceEnd ?? start?.src, scanFrom < end else {
            return declared
        }
        let written = try await readOffsets(target, lane.target, from: scanFrom, to: end) { record in
            Self.lastHop(record) == flow.source
        }
        guard !written.isEmpty else { return declared }
        let sourceEnd = try await KafkaAdmin(cluster: source).listOffsets([lane.source], .latest)[lane.source] ?? sourceFrom
        let copied = try await readOffsets(source, lane.source, from: sourceFrom, to: sourceEnd, limit: written.count) { record in
            !Self.provenance(record).contains { $0 == flow.target }
        }
        guard copied.count == written.count else {
            throw MirrorError.targetNotEmpty("\(lane.target) holds \(written.count) records copied from \(flow.source) after offset \(scanFrom) that the mapping does not know, but the source has only \(copied.count) such records after \(sourceFrom)")
        }
        var map = declared
        var changed: [Int64: OffsetRun] = [:]
        for (s, t) in zip(copied, written) {
            let r = try map.append(src: s, tgt: t, count: 1)
            changed[r.src] = r
        }
        try await store.write(lane.key, targetTopic: lane.target.topic, runs: changed.values.sorted { $0.src < $1.src })
        logger.info("found records written before a crash and mapped them", metadata: [
            "partition": "\(lane.source)", "remote": "\(lane.target)", "records": "\(written.count)"])
        return map
    }

    static func provenance(_ r: ConsumerRecord) -> [Substring] {
        guard let h = r.headers.last(where: { $0.key == BatchConverter.provenanceHeader }), let v = h.value else { return [] }
        return String(buffer: v).split(separator: ",")
    }

    static func lastHop(_ r: ConsumerRecord) -> String? {
        provenance(r).last.map(String.init)
    }

    /// Offsets of the records in `[from, to)` of `tp` that `keep` accepts, at most `limit`.
    private func readOffsets(_ cluster: KafkaCluster, _ tp: TopicPartition, from: Int64, to: Int64, limit: Int = .max,
                             keep: (ConsumerRecord) -> Bool) async throws -> [Int64] {
        guard from < to else { return [] }
        let consumer = KafkaConsumer(cluster: cluster, config: ConsumerConfig())
        consumer.assign([tp])
        consumer.seek(tp, to: .offset(from))
        var out: [Int64] = []
        do {
            var position = from
            let deadline = ContinuousClock.now + .seconds(120)
            while position < to && out.count < limit {
                guard ContinuousClock.now < deadline else {
                    throw MirrorError.configuration("reading \(tp) from \(from) to \(to) did not finish in two minutes (at \(position))")
                }
                for r in try await consumer.poll(timeout: .milliseconds(500)) where r.offset < to && out.count < limit {
                    if keep(r) { out.append(r.offset) }
                }
                position = consumer.currentPositions[tp] ?? position
            }
        } catch {
            await consumer.close()
            throw error
        }
        await consumer.close()
        return out
    }
}
