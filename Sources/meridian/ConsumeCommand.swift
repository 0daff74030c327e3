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
            Without -G (--group) the consumer reads the chosen partitions directly,
            from -o. With -G it joins the group: committed offsets win, -o applies
            only to partitions the group never committed, and progress is committed
            as it goes. Flags follow kcat's (-b, -t, -p, -o, -e, -c, -G, -K,
            -X key=value); consumer settings take the Java client's names with -X
            (auto.offset.reset, session.timeout.ms, fetch.max.wait.ms, ...).

            -o takes beginning, end, stored (the group's committed offset), an
            offset, -N (N before the end of each partition), s@TIMESTAMP_MS, or an
            ISO-8601 time.

            Examples:
              meridian consume -b 127.0.0.1:9092 -t orders -o beginning -e
              meridian consume -t orders -G audit --format json
              meridian consume -t orders -p 2 -o 1500 -c 10 -K :
              meridian consume -t orders -o -100 -e
              meridian consume -t orders -o 2026-11-25T08:00:00Z
            """
    )

    /// text is the record value alone (value is its older name); kv is KEY<SEP>VALUE.
    enum Format: String, ExpressibleByArgument { case text, value, kv, json }

    /// Where to start, from -o.
    enum Start: Equatable {
        case target(KafkaConsumer.SeekTarget)
        /// The group's committed offset (kcat's `stored`).
        case stored
        /// This many records before the end of each partition (kcat's `-N`).
        case beforeEnd(Int64)

        init(parsing text: String) throws {
            switch text.lowercased() {
            case "earliest", "beginning": self = .target(.earliest)
            case "latest", "end": self = .target(.latest)
            case "stored": self = .stored
            default:
                if text.hasPrefix("-"), let n = Int64(text.dropFirst()) {
                    self = .beforeEnd(n)
                } else if let o = Int64(text) {
                    self = .target(.offset(o))
                } else if text.lowercased().hasPrefix("s@"), let t = Int64(text.dropFirst(2)) {
                    self = .target(.timestamp(t))
                } else if let t = parseISO8601(text) {
                    self = .target(.timestamp(t))
                } else {
                    throw ValidationError("-o must be beginning, end, stored, an offset, -N, s@TIMESTAMP_MS or an ISO-8601 time, not '\(text)'")
                }
            }
        }
    }

    @OptionGroup var client: ClientOptions
    @Option(name: [.customShort("t"), .customLong("topic")], help: "The topic (or give it as the argument).") var topicOption: String?
    @Argument(help: "The topic (or -t).") var topicArgument: String?
    @Option(name: [.customShort("o"), .customLong("offset"), .customLong("from")], parsing: .unconditional,
            help: "beginning, end, stored, an offset, -N, s@TIMESTAMP_MS or an ISO-8601 time. Default end.") var offset: String = "end"
    @Option(name: [.customShort("p"), .customLong("partition")], help: "Only this partition; repeatable.") var partitions: [Int32] = []
    @Option(name: [.customShort("G"), .customLong("group")], help: "Consume as a member of this group (-X group.id).") var group: String?
    @Option(name: [.customShort("c"), .customLong("count")], help: "Stop after this many records.") var count: Int?
    @Flag(name: [.customShort("e"), .customLong("exit-at-end")], help: "Stop when every partition has been read to its end.") var exitAtEnd = false
    @Option(help: "text (the value), kv (KEY<SEP>VALUE) or json (with partition, offset, timestamp, key, headers).") var format: Format = .text
    @Option(name: [.customShort("K"), .customLong("key-separator")], help: "Print KEY<SEP>VALUE (--format kv) with this separator. Default tab.") var keySeparator: String?

    func run() async throws {
        guard let topic = topicOption ?? topicArgument else { throw ValidationError("give the topic: -t TOPIC") }
        let start = try Start(parsing: offset)
        let format: Format = keySeparator != nil && (self.format == .text || self.format == .value) ? .kv : self.format
        let separator = keySeparator ?? "\t"
        let topicName = TopicName(topic)
        var out = OutputBuffer()
        var printed = 0
        var props = try client.clientProperties()
        let connection = try client.resolve(&props, clientID: "meridian-consume")
        var config = ConsumerConfig()
        switch start {
        case .target(.latest): config.autoOffsetReset = .latest
        case .stored: config.autoOffsetReset = .latest
        default: config.autoOffsetReset = .earliest
        }
        config.autoCommitIntervalMs = 1000
        try config.apply(&props)
        ClientOptions.reportIgnored(props)
        if let group { config.groupID = GroupID(group) }
        if start == .stored && config.groupID == nil { throw ValidationError("-o stored needs a group: -G GROUP") }
        let grouped = config.groupID != nil
        try await client.withCluster(connection) { [config] cluster in
            let consumer = KafkaConsumer(cluster: cluster, config: config)
            let admin = KafkaAdmin(cluster: cluster)
            let info = try await cluster.topic(topicName)
            let chosen = partitions.isEmpty ? info.partitions.map(\.partition) : partitions
            for p in chosen where !info.partitions.contains(where: { $0.partition == p }) {
                throw ValidationError("topic \(topic) has no partition \(p) (it has \(info.partitions.count))")
            }
            if grouped && partitions.isEmpty {
                try consumer.subscribe([topicName])
            } else {
                let tps = chosen.map { TopicPartition(topicName, $0) }
                consumer.assign(tps)
                switch start {
                case .stored:
                    break
                case .target(let target):
                    if !grouped || target != .latest { for tp in tps { consumer.seek(tp, to: target) } }
                case .beforeEnd(let n):
                    let first = try await admin.listOffsets(tps, .earliest)
                    let last = try await admin.listOffsets(tps, .latest)
                    for tp in tps { consumer.seek(tp, to: .offset(max(first[tp] ?? 0, (last[tp] ?? 0) - n))) }
                }
            }
            var ends: [TopicPartition: Int64] = [:]
            var idle = 0
            loop: while true {
                let batch = try await consumer.poll(timeout: .milliseconds(500))
                for (i, r) in batch.enumerated() {
                    out.append(r, format: format, separator: separator)
                    printed += 1
                    if let count, printed >= count {
                        // Records fetched but not printed are not consumed: move back to the first
                        // of them, so the group commits only what was printed.
                        var firstUnprinted: [TopicPartition: Int64] = [:]
                        for r in batch[(i + 1)...] where firstUnprinted[TopicPartition(r.topic, r.partition)] == nil {
                            firstUnprinted[TopicPartition(r.topic, r.partition)] = r.offset
                        }
                        for (tp, o) in firstUnprinted { consumer.seek(tp, to: .offset(o)) }
                        break loop
                    }
                }
                out.flush()
                if exitAtEnd {
                    let assigned = consumer.assignment
                    if !assigned.isEmpty {
                        let missing = assigned.filter { ends[$0] == nil }
                        if !missing.isEmpty { for (tp, o) in try await admin.listOffsets(missing, .latest) { ends[tp] = o } }
                        let pos = consumer.currentPositions
                        if assigned.allSatisfy({ (pos[$0] ?? -1) >= (ends[$0] ?? 0) }) { break loop }
                    } else if !grouped {
                        break loop
                    }
                    idle = batch.isEmpty ? idle + 1 : 0
                }
            }
            out.flush()
            if grouped { try? await consumer.commit() }
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
        case .text, .value:
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
