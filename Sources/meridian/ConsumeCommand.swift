import ArgumentParser
import Foundation
import KafkaClient
import KafkaProtocol
import NIOCore

struct ConsumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Print a topic's records, one per line.",
        discussion: """
            Without --group the consumer reads the chosen partitions directly (from --from).
            With --group it joins the group: committed offsets win, --from applies only to partitions
            the group never committed, and progress is committed as it goes.

            Examples:
              meridian consume orders --from earliest --exit-at-end
              meridian consume orders --group audit --format json
              meridian consume orders --partition 2 --from 1500 --count 10 --format kv
              meridian consume orders --from 2026-11-25T08:00:00Z
            """
    )

    enum Format: String, ExpressibleByArgument { case value, kv, json }

    @OptionGroup var client: ClientOptions
    @Argument(help: "The topic.") var topic: String
    @Option(help: "earliest, latest, an offset, or an ISO-8601 time.") var from: String = "latest"
    @Option(name: .customLong("partition"), help: "Only this partition; repeatable.") var partitions: [Int32] = []
    @Option(help: "Consume as a member of this group.") var group: String?
    @Option(help: "Stop after this many records.") var count: Int?
    @Flag(help: "Stop when every partition has been read to its end.") var exitAtEnd = false
    @Option(help: "value, kv (KEY<TAB>VALUE) or json (with partition, offset, timestamp, key, headers).") var format: Format = .value
    @Option(help: "Separator between key and value for --format kv.") var keySeparator: String = "\t"

    func run() async throws {
        var start: KafkaConsumer.SeekTarget
        switch from.lowercased() {
        case "earliest", "beginning": start = .earliest
        case "latest", "end": start = .latest
        default:
            if let o = Int64(from) { start = .offset(o) } else if let t = parseISO8601(from) { start = .timestamp(t) } else {
                throw ValidationError("--from must be earliest, latest, an offset or an ISO-8601 time, not '\(from)'")
            }
        }
        let topicName = TopicName(topic)
        var out = OutputBuffer()
        var printed = 0
        try await client.withCluster(clientID: "meridian-consume") { cluster in
            var config = ConsumerConfig(groupID: group.map { GroupID($0) })
            config.autoOffsetReset = start == .latest ? .latest : .earliest
            config.autoCommitIntervalMs = 1000
            let consumer = KafkaConsumer(cluster: cluster, config: config)
            let admin = KafkaAdmin(cluster: cluster)
            let info = try await cluster.topic(topicName)
            let chosen = partitions.isEmpty ? info.partitions.map(\.partition) : partitions
            for p in chosen where !info.partitions.contains(where: { $0.partition == p }) {
                throw ValidationError("topic \(topic) has no partition \(p) (it has \(info.partitions.count))")
            }
            if group != nil && partitions.isEmpty {
                try consumer.subscribe([topicName])
            } else {
                let tps = chosen.map { TopicPartition(topicName, $0) }
                consumer.assign(tps)
                if group == nil || start != .latest {
                    for tp in tps { consumer.seek(tp, to: start) }
                }
            }
            var ends: [TopicPartition: Int64] = [:]
            var idle = 0
            loop: while true {
                let batch = try await consumer.poll(timeout: .milliseconds(500))
                for r in batch {
                    out.append(r, format: format, separator: keySeparator)
                    printed += 1
                    if let count, printed >= count { break loop }
                }
                out.flush()
                if exitAtEnd {
                    let assigned = consumer.assignment
                    if !assigned.isEmpty {
                        let missing = assigned.filter { ends[$0] == nil }
                        if !missing.isEmpty { for (tp, o) in try await admin.listOffsets(missing, .latest) { ends[tp] = o } }
                        let pos = consumer.currentPositions
                        if assigned.allSatisfy({ (pos[$0] ?? -1) >= (ends[$0] ?? 0) }) { break loop }
                    } else if group == nil {
                        break loop
                    }
                    idle = batch.isEmpty ? idle + 1 : 0
                }
            }
            out.flush()
            if group != nil { try? await consumer.commit() }
            await consumer.close()
        }
        out.flush()
        printError("consumed \(printed) record(s)")
    }
}

/// Collects output lines and writes them in large chunks.
struct OutputBuffer {
    private var bytes: [UInt8] = []

    mutating func append(_ r: ConsumerRecord, format: ConsumeCommand.Format, separator: String) {
        func text(_ b: ByteBuffer?) -> String? { b.map { String(decoding: $0.readableBytesView, as: UTF8.self) } }
        switch format {
        case .value:
            bytes.append(contentsOf: (text(r.value) ?? "").utf8)
        case .kv:
            bytes.append(contentsOf: (text(r.key) ?? "").utf8)
            bytes.append(contentsOf: separator.utf8)
            bytes.append(contentsOf: (text(r.value) ?? "").utf8)
        case .json:
            var o: [String: Any] = ["topic": r.topic.rawValue, "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp]
            o["key"] = text(r.key) ?? NSNull()
            o["value"] = text(r.value) ?? NSNull()
            var h: [String: Any] = [:]
            for header in r.headers { h[header.key] = text(header.value) ?? NSNull() }
            o["headers"] = h
            if let data = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) { bytes.append(contentsOf: data) }
        }
        bytes.append(0x0A)
    }

    mutating func flush() {
        guard !bytes.isEmpty else { return }
        FileHandle.standardOutput.write(Data(bytes))
        bytes.removeAll(keepingCapacity: true)
    }
}
