import Foundation
import KafkaClient
import KafkaProtocol
import Logging
import NIOCore
import Topology

/// `meridian audit`: reads a flow's source and target partitions and compares them record by record
/// through the offset mapping the flow stored in the target.
///
/// A source record at offset `s` belongs at target offset `translate(s)`; the record there must have
/// the same key, value, headers (apart from the provenance header identity naming adds) and
/// timestamp. Findings, each with its offsets:
/// - missing: a source record with no copy in the target (deleted, truncated, never written);
/// - reordered: its copy is in the target, at another offset;
/// - altered: the record at its target offset differs (the fields that differ are named);
/// - duplicated: a target record that is a second copy of a source record already in place;
/// - unexpected: a target record no source record corresponds to.
/// Records the flow has not copied yet (past the mapping's end) are counted, not findings; source
/// records that came from the target (identity naming drops them) are not expected there.
public struct FlowAudit: Sendable {
    public struct Finding: Sendable, Equatable, CustomStringConvertible {
        public enum Kind: String, Sendable { case missing, reordered, altered, duplicated, unexpected }
        public var kind: Kind
        public var topic: String
        public var partition: Int32
        public var sourceOffset: Int64?
        public var targetOffset: Int64?
        public var detail: String

        public var description: String {
            var s = "\(kind.rawValue) \(topic)-\(partition)"
            if let o = sourceOffset { s += " source offset \(o)" }
            if let o = targetOffset { s += " target offset \(o)" }
            return detail.isEmpty ? s : "\(s): \(detail)"
        }
    }

    public struct PartitionResult: Sendable, Equatable {
        public var source: TopicPartition
        public var target: TopicPartition
        /// Source records compared (from the audit's start to the copied position).
        public var checked: Int
        /// Source records past the copied position (lag, not a finding).
        public var notYetCopied: Int64
        public var findings: [Finding]
        /// Findings by kind.
        public var counts: [Finding.Kind: Int]
    }

    public struct Result: Sendable {
        public var partitions: [PartitionResult]
        public var exact: Bool { partitions.allSatisfy { $0.findings.isEmpty } }
        public var checked: Int { partitions.reduce(0) { $0 + $1.checked } }
    }

    /// A record reduced to what the audit compares: one hash per field.
    struct Print: Equatable, Hashable {
        var key: Int
        var value: Int
        var headers: Int
        var timestamp: Int64
    }

    struct Seen {
        var offset: Int64
        var print: Print
        /// Identity naming: the record came from the target region (never copied there).
        var fromTarget = false
    }

    let lag: ClusterLag
    let source: KafkaCluster
    let target: KafkaCluster
    let logger: Logger
    let provenanceSource: String?
    let targetRegion: String

    public init(flow: Topology.Flow, regions: Set<String>, source: KafkaCluster, target: KafkaCluster, logger: Logger) throws {
        lag = try ClusterLag(flow: flow, regions: regions, source: source, target: target, logger: logger)
        self.source = source
        self.target = target
        self.logger = logger
        provenanceSource = flow.naming == .identity ? flow.source : nil
        targetRegion = flow.target
    }

    /// Audits every selected partition (only `topic`'s with one), from `fromMs` (a timestamp) or
    /// the source's log start. `progress` is called after each partition.
    public func run(topic: TopicName? = nil, fromMs: Int64? = nil, maxFindingsPerPartition: Int = 1_000,
                    progress: @Sendable (PartitionResult) -> Void = { _ in }) async throws -> Result {
        var positions = try await lag.positions()
        if let topic { positions = positions.filter { $0.source.topic == topic } }
        var starts: [TopicPartition: Int64] = [:]
        if let fromMs, !positions.isEmpty {
            starts = try await KafkaAdmin(cluster: source).listOffsets(positions.map(\.source), .timestamp(fromMs))
        }
        var results: [PartitionResult] = []
        for p in positions {
            let from = max(p.logStart, starts[p.source] ?? p.logStart)
            let r = try await audit(p, from: from, maxFindings: maxFindingsPerPartition)
            progress(r)
            results.append(r)
        }
        return Result(partitions: results)
    }

    func audit(_ p: ClusterLag.Position, from: Int64, maxFindings: Int) async throws -> PartitionResult {
        let upTo = max(from, p.copied)
        let src = from < upTo ? try await read(source, p.source, from: from, to: upTo, stripProvenance: provenanceSource != nil) : []
        let admin = KafkaAdmin(cluster: target)
        let targetEnd = try await admin.listOffsets([p.remote], .latest)[p.remote] ?? 0
        let targetStart = try await admin.listOffsets([p.remote], .earliest)[p.remote] ?? 0
        let tFrom = max(targetStart, p.map.translate(from) ?? targetEnd)
        let dst = tFrom < targetEnd ? try await read(target, p.remote, from: tFrom, to: targetEnd, stripProvenance: provenanceSource != nil) : []

        var findings: [Finding] = []
        var counts: [Finding.Kind: Int] = [:]
        func note(_ kind: Finding.Kind, _ s: Int64?, _ t: Int64?, _ detail: String = "") {
            counts[kind, default: 0] += 1
            if findings.count < maxFindings {
                findings.append(Finding(kind: kind, topic: p.source.topic.rawValue, partition: p.source.partition, sourceOffset: s, targetOffset: t, detail: detail))
            }
        }
        var byTarget: [Int64: Int] = [:]
        byTarget.reserveCapacity(dst.count)
        for (i, d) in dst.enumerated() { byTarget[d.offset] = i }
        var used = [Bool](repeating: false, count: dst.count)
        var misplaced: [(Seen, Int64?)] = []
        var expected = 0
        // 1. Each source record at its exact target offset.
        for s in src where !s.fromTarget {
            expected += 1
            let t = exactTarget(p.map, s.offset)
            if let t, let i = byTarget[t], !used[i], dst[i].print == s.print {
                used[i] = true
            } else {
                misplaced.append((s, t))
            }
        }
        // 2. Those not in place: elsewhere in the target (reordered), replaced (altered) or absent (missing).
        var unusedByPrint: [Print: [Int]] = [:]
        for i in dst.indices where !used[i] { unusedByPrint[dst[i].print, default: []].append(i) }
        var alteredCandidates: [(Seen, Int64)] = []
        for (s, t) in misplaced {
            if var list = unusedByPrint[s.print], let i = list.first {
                list.removeFirst()
                unusedByPrint[s.print] = list
                used[i] = true
                note(.reordered, s.offset, dst[i].offset, "expected at target offset \(t.map(String.init) ?? "?")")
            } else if let t, byTarget[t] != nil {
                alteredCandidates.append((s, t))
            } else {
                note(.missing, s.offset, t, t.map { $0 < targetStart ? "the target's log starts at \(targetStart)" : "" } ?? "no mapping covers it")
            }
        }
        for (s, t) in alteredCandidates {
            guard let i = byTarget[t], !used[i] else {
                note(.missing, s.offset, t)
                continue
            }
            used[i] = true
            let d = dst[i].print
            let fields = [("key", d.key != s.print.key), ("value", d.value != s.print.value), ("headers", d.headers != s.print.headers),
                          ("timestamp", d.timestamp != s.print.timestamp)].filter(\.1).map(\.0)
            note(.altered, s.offset, t, "differs in " + fields.joined(separator: ", "))
        }
        // 3. Target records left over: copies of a source record (duplicated) or from nowhere.
        let sourceByPrint = Dictionary(src.map { ($0.print, $0.offset) }, uniquingKeysWith: { a, _ in a })
        for i in dst.indices where !used[i] {
            if let s = sourceByPrint[dst[i].print] {
                note(.duplicated, s, dst[i].offset, "a second copy of source offset \(s)")
            } else {
                note(.unexpected, nil, dst[i].offset, "no source record has this key, value, headers and timestamp")
            }
        }
        return PartitionResult(source: p.source, target: p.remote, checked: expected, notYetCopied: ClusterLag.gap(p.end, upTo),
                               findings: findings.sorted { ($0.sourceOffset ?? $0.targetOffset ?? 0) < ($1.sourceOffset ?? $1.targetOffset ?? 0) },
                               counts: counts)
    }

    /// The target offset a source offset was copied to, only if a mapping run covers it exactly.
    func exactTarget(_ map: PartitionOffsetMap, _ s: Int64) -> Int64? {
        guard let t = map.translate(s), let back = map.sourceOffset(ofTarget: t), back == s else { return nil }
        return t
    }

    /// Every record of `tp` in `from..<to`, reduced to its print.
    func read(_ cluster: KafkaCluster, _ tp: TopicPartition, from: Int64, to: Int64, stripProvenance: Bool) async throws -> [Seen] {
        var config = ConsumerConfig()
        config.maxPartitionFetchBytes = 4 << 20
        config.fetchMaxWaitMs = 100
        let consumer = KafkaConsumer(cluster: cluster, config: config)
        consumer.assign([tp])
        consumer.seek(tp, to: .offset(from))
        var out: [Seen] = []
        out.reserveCapacity(Int(min(ClusterLag.gap(to, from), 10_000_000)))
        var idle = 0
        do {
            while (consumer.currentPositions[tp] ?? from) < to {
                let records = try await consumer.poll(timeout: .milliseconds(500))
                idle = records.isEmpty ? idle + 1 : 0
                // Nothing more arrives (the range ends in records that are not there): stop.
                if idle >= 20 { break }
                for r in records where r.offset >= from && r.offset < to {
                    out.append(seen(r, stripProvenance: stripProvenance))
                }
            }
        } catch {
            await consumer.close()
            throw error
        }
        await consumer.close()
        return out
    }

    func seen(_ r: ConsumerRecord, stripProvenance: Bool) -> Seen {
        func hash(_ b: ByteBuffer?) -> Int {
            var h = Hasher()
            if let b {
                h.combine(1 as UInt8)
                b.withUnsafeReadableBytes { h.combine(bytes: $0) }
            } else {
                h.combine(0 as UInt8)
            }
            return h.finalize()
        }
        var headers = Hasher()
        var fromTarget = false
        for header in r.headers {
            if stripProvenance && header.key == BatchConverter.provenanceHeader {
                if let v = header.value, String(buffer: v).split(separator: ",").contains(Substring(targetRegion)) { fromTarget = true }
                continue
            }
            headers.combine(header.key)
            headers.combine(hash(header.value))
        }
        return Seen(offset: r.offset, print: Print(key: hash(r.key), value: hash(r.value), headers: headers.finalize(), timestamp: r.timestamp),
                    fromTarget: fromTarget)
    }
}
