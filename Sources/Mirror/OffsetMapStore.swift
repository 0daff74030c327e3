import Foundation
import KafkaClient
import KafkaProtocol
import Logging
import NIOCore

/// The offset mappings of every flow into a cluster, kept in that cluster's compacted topic
/// `meridian.offset-map.internal`, so any process (a restarted mirror, `meridian offsets translate`,
/// another mirror taking a partition over) can translate without the mirror that wrote them.
///
/// One record per run: key `<flow>/<source topic>/<partition>/<run's first source offset>`, value a
/// small JSON object (`targetTopic`, `src`, `tgt`, `count`, `epoch`); a run that grows is written
/// again under the same key and compaction keeps the last; a run dropped on reconciliation gets a
/// tombstone. A run is written before the records it describes (an intent); the target log's end
/// decides on start how much of it landed (``PartitionOffsetMap/truncate(targetEnd:)``).
public final class OffsetMapStore: Sendable {
    public static let topic: TopicName = "meridian.offset-map.internal"

    public struct PartitionKey: Hashable, Sendable, CustomStringConvertible {
        public var flow: String
        public var topic: TopicName
        public var partition: Int32
        public init(flow: String, topic: TopicName, partition: Int32) {
            self.flow = flow
            self.topic = topic
            self.partition = partition
        }
        public var description: String { "\(flow)/\(topic)/\(partition)" }
    }

    struct Entry: Codable {
        var targetTopic: String
        var src: Int64
        var tgt: Int64
        var count: Int64
        var epoch: Int32
    }

    /// What the mapping topic holds for a partition: its runs and the target topic they point into.
    public struct Loaded: Sendable {
        public var targetTopic: TopicName
        public var map: PartitionOffsetMap
        /// Identity naming: where the flow's first write session started (source position, target
        /// log end then), so records it wrote but could not map yet can be found after a crash.
        public var start: (src: Int64, tgt: Int64)? = nil
    }

    let cluster: KafkaCluster
    let producer: KafkaProducer
    let logger: Logger

    public init(target: KafkaCluster, logger: Logger) {
        cluster = target
        var config = ProducerConfig()
        config.lingerMs = 0
        config.acks = -1
        producer = KafkaProducer(cluster: target, config: config)
        self.logger = logger
    }

    /// Creates the mapping topic (one partition, compacted) unless it exists.
    public func ensureTopic() async throws {
        let admin = KafkaAdmin(cluster: cluster)
        do {
            _ = try await cluster.topic(Self.topic)
            return
        } catch KafkaClientError.unknownTopic {
        } catch let KafkaClientError.broker(code, _) where code == .unknownTopicOrPartition {
        }
        do {
            try await admin.createTopic(Self.topic, partitions: 1, configs: ["cleanup.policy": "compact"])
            logger.info("created the offset mapping topic", metadata: ["topic": "\(Self.topic)"])
        } catch let KafkaClientError.broker(code, _) where code == .topicAlreadyExists {
        }
    }

    static func key(_ k: PartitionKey, src: Int64) -> String { "\(k.flow)/\(k.topic)/\(k.partition)/\(src)" }
    static func startKey(_ k: PartitionKey) -> String { "\(k.flow)/\(k.topic)/\(k.partition)/start" }

    /// Records where an identity-named partition's first write session starts, before it writes.
    public func writeStart(_ k: PartitionKey, targetTopic: TopicName, src: Int64, tgt: Int64) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let value = try encoder.encode(Entry(targetTopic: targetTopic.rawValue, src: src, tgt: tgt, count: 0, epoch: -1))
        _ = try await producer.send(topic: Self.topic, key: ByteBuffer(string: Self.startKey(k)), value: ByteBuffer(bytes: value), partition: 0)
    }

    /// Writes (and waits for) the given runs of a partition, and tombstones for `removed`.
    public func write(_ k: PartitionKey, targetTopic: TopicName, runs: [OffsetRun], removed: [OffsetRun] = []) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        var pending: [Task<RecordMetadata, Error>] = []
        for r in runs {
            let value = try encoder.encode(Entry(targetTopic: targetTopic.rawValue, src: r.src, tgt: r.tgt, count: r.count, epoch: r.epoch))
            let key = ByteBuffer(string: Self.key(k, src: r.src))
            let producer = self.producer
            pending.append(Task { try await producer.send(topic: Self.topic, key: key, value: ByteBuffer(bytes: value), partition: 0) })
        }
        for r in removed {
            let key = ByteBuffer(string: Self.key(k, src: r.src))
            let producer = self.producer
            pending.append(Task { try await producer.send(topic: Self.topic, key: key, value: nil, partition: 0) })
        }
        for p in pending { _ = try await p.value }
    }

    /// Reads the whole mapping topic: every partition's runs for `flow` (all flows when nil).
    public func load(flow: String?) async throws -> [PartitionKey: Loaded] {
        let admin = KafkaAdmin(cluster: cluster)
        let tp = TopicPartition(Self.topic, 0)
        let ends = try await admin.listOffsets([tp], .latest)
        let end = ends[tp] ?? 0
        var latest: [String: (PartitionKey, Entry?)] = [:]
        if end > 0 {
            let consumer = KafkaConsumer(cluster: cluster, config: ConsumerConfig())
            do {
                try await read(consumer, tp, end: end, flow: flow, into: &latest)
            } catch {
                await consumer.close()
                throw error
            }
            await consumer.close()
        }
        var out: [PartitionKey: (TopicName, [OffsetRun])] = [:]
        var starts: [PartitionKey: (TopicName, Int64, Int64)] = [:]
        for (key, (pk, e)) in latest {
            guard let e else { continue }
            if key.hasSuffix("/start") {
                starts[pk] = (TopicName(e.targetTopic), e.src, e.tgt)
                continue
            }
            out[pk, default: (TopicName(e.targetTopic), [])].1.append(OffsetRun(src: e.src, tgt: e.tgt, count: e.count, epoch: e.epoch))
        }
        var loaded = out.mapValues { Loaded(targetTopic: $0.0, map: Self.consistent($0.1)) }
        for (pk, s) in starts {
            loaded[pk, default: Loaded(targetTopic: s.0, map: PartitionOffsetMap())].start = (s.1, s.2)
        }
        return loaded
    }

    /// What a flow's mapping says landed, read without a mirror: ``load(flow:)`` with each
    /// partition's runs cut at its target partition's log end, as a mirror decides on start (runs a
    /// stopped mirror declared but never wrote do not count).
    public static func landed(flow: String, target: KafkaCluster, logger: Logger) async throws -> [PartitionKey: Loaded] {
        let store = OffsetMapStore(target: target, logger: logger)
        var loaded: [PartitionKey: Loaded]
        do {
            loaded = try await store.load(flow: flow)
        } catch {
            await store.close()
            throw error
        }
        await store.close()
        let admin = KafkaAdmin(cluster: target)
        for (k, v) in loaded where v.map.sourceEnd != nil {
            let remote = TopicPartition(v.targetTopic, k.partition)
            if let end = try? await admin.listOffsets([remote], .latest)[remote] {
                _ = loaded[k]!.map.truncate(targetEnd: end)
            }
        }
        return loaded
    }

    private func read(_ consumer: KafkaConsumer, _ tp: TopicPartition, end: Int64, flow: String?,
                      into latest: inout [String: (PartitionKey, Entry?)]) async throws {
        consumer.assign([tp])
        consumer.seek(tp, to: .earliest)
        let decoder = JSONDecoder()
        var position: Int64 = 0
        while position < end {
            let records = try await consumer.poll(timeout: .milliseconds(500))
            for r in records {
                position = max(position, r.offset + 1)
                guard let kb = r.key else { continue }
                let key = String(buffer: kb)
                let parts = key.split(separator: "/", omittingEmptySubsequences: false)
                guard parts.count == 4, let partition = Int32(parts[2]), Int64(parts[3]) != nil || parts[3] == "start" else {
                    logger.warning("skipping an offset mapping record with an unreadable key", metadata: ["key": "\(key)", "offset": "\(r.offset)"])
                    continue
                }
                let pk = PartitionKey(flow: String(parts[0]), topic: TopicName(String(parts[1])), partition: partition)
                if let flow, pk.flow != flow { continue }
                if let v = r.value {
                    // The record comes from a cluster: offsets are checked before runs add them.
                    guard let e = try? decoder.decode(Entry.self, from: Data(v.readableBytesView)),
                          e.src >= 0, e.tgt >= 0, e.count >= 0, e.src <= Int64.max - e.count, e.tgt <= Int64.max - e.count else {
                        logger.warning("skipping an unreadable offset mapping record", metadata: ["key": "\(key)", "offset": "\(r.offset)"])
                        continue
                    }
                    latest[key] = (pk, e)
                } else {
                    latest[key] = (pk, nil)
                }
            }
            if let p = consumer.currentPositions[tp] { position = max(position, p) }
        }
    }

    /// Runs sorted, with any run that overlaps an earlier one dropped (a stale record compaction
    /// had not removed yet after a reconciliation shortened its predecessor).
    static func consistent(_ runs: [OffsetRun]) -> PartitionOffsetMap {
        var kept: [OffsetRun] = []
        for r in runs.sorted(by: { $0.src < $1.src }) where r.count > 0 {
            if let last = kept.last, r.src < last.srcEnd || r.tgt < last.tgtEnd { continue }
            kept.append(r)
        }
        return PartitionOffsetMap(runs: kept)
    }

    public func close() async {
        await producer.close()
    }
}
