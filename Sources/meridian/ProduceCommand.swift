import ArgumentParser
import Foundation
import KafkaClient
import MeridianBench
import KafkaProtocol
import NIOCore

struct ProduceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Send one record per input line to a topic.",
        discussion: """
            Reads standard input (or --file) line by line. With -K (--key-separator)
            the text before the first separator is the key. A summary (records,
            bytes, time) goes to standard error. Flags follow kcat's (-b, -t, -p, -K,
            -c, -X key=value); producer settings take the Java client's names with
            -X (acks, compression.type, linger.ms, enable.idempotence, ...).

            Examples:
              seq 1 1000 | meridian produce -t numbers
              meridian produce -b 127.0.0.1:9092 -t orders -K : --file orders.txt --header source=import -X acks=all
              yes hello | meridian produce -t load -c 100000 --rate 5000 -X compression.type=gzip
            """
    )

    @OptionGroup var client: ClientOptions
    @Option(name: [.customShort("t"), .customLong("topic")], help: "The topic (or give it as the argument).") var topicOption: String?
    @Argument(help: "The topic (or -t).") var topicArgument: String?
    @Option(help: "Read lines from this file instead of standard input.") var file: String?
    @Option(name: [.customShort("K"), .customLong("key-separator")], help: "Split each line into KEY<SEP>VALUE at the first SEP.") var keySeparator: String?
    @Option(name: .customLong("header"), help: "Header KEY=VALUE added to every record; repeatable.") var headers: [String] = []
    @Option(help: "all (-1), 1 or 0 (-X acks). Default all.") var acks: String?
    @Option(help: "none or gzip (-X compression.type). Default none.") var compression: String?
    @Option(help: "Records per second at most.") var rate: Double?
    @Option(name: [.customShort("c"), .customLong("count")], help: "Stop after this many records.") var count: Int?
    @Option(name: [.customShort("p"), .customLong("partition")], help: "Write every record to this partition.") var partition: Int32?
    @Option(help: "murmur2 (the Java client's) or consistent_random (librdkafka's default) (-X partitioner). Default murmur2.") var partitioner: String?
    @Option(help: "Milliseconds a batch waits for more records (-X linger.ms). Default 5.") var lingerMs: Int64?
    @Flag(help: "Turn off idempotence (-X enable.idempotence=false; it needs acks=all).") var noIdempotence = false

    func run() async throws {
        guard let topic = topicOption ?? topicArgument else { throw ValidationError("give the topic: -t TOPIC") }
        var props = try client.clientProperties()
        let connection = try client.resolve(&props, clientID: "meridian-produce")
        var config = ProducerConfig()
        try config.apply(&props)
        ClientOptions.reportIgnored(props)
        // Flags win over -X.
        if let acks {
            switch acks.lowercased() {
            case "all", "-1": config.acks = -1
            case "1": config.acks = 1
            case "0": config.acks = 0
            default: throw ValidationError("--acks must be all, 1 or 0")
            }
        }
        if noIdempotence { config.enableIdempotence = false }
        if config.acks != -1 { config.enableIdempotence = false }
        if let compression {
            guard let codec = CompressionCodec(name: compression), codec.isSupportedLocally else {
                throw ValidationError("--compression must be none or gzip")
            }
            config.compression = codec
        }
        if let partitioner {
            guard let p = Partitioner(name: partitioner) else { throw ValidationError("--partitioner must be murmur2 or consistent_random") }
            config.partitioner = p
        }
        if let lingerMs { config.lingerMs = lingerMs }
        let headerList: [RecordHeader] = try headers.map {
            let parts = $0.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--header takes KEY=VALUE, got '\($0)'") }
            return RecordHeader(key: parts[0], value: ByteBuffer(string: parts[1]))
        }
        let input: FileHandle
        if let file {
            guard let h = FileHandle(forReadingAtPath: file) else { throw ValidationError("cannot read --file \(file)") }
            input = h
        } else {
            input = FileHandle.standardInput
        }
        let topicName = TopicName(topic)
        let failures = ManagedCounter()
        let firstFailure = NIOLockedValueBoxString()
        let start = Date()
        var sent = 0
        var bytes = 0
        try await client.withCluster(connection) { cluster in
            let producer = KafkaProducer(cluster: cluster, config: config)
            var reader = LineReader(handle: input)
            while let line = reader.next() {
                if let count, sent >= count { break }
                var key: ByteBuffer? = nil
                var value = line
                if let sep = keySeparator, let r = line.range(of: sep) {
                    key = ByteBuffer(string: String(line[..<r.lowerBound]))
                    value = String(line[r.upperBound...])
                }
                try await producer.enqueue(topic: topicName, key: key, value: ByteBuffer(string: value), headers: headerList,
                                           partition: partition) { result in
                    if case .failure(let e) = result {
                        failures.add(1)
                        firstFailure.setIfEmpty("\(e)")
                    }
                }
                sent += 1
                bytes += line.utf8.count
                if let rate, rate > 0 {
                    let due = start.addingTimeInterval(Double(sent) / rate)
                    let wait = due.timeIntervalSinceNow
                    if wait > 0 { try await Task.sleep(for: .milliseconds(Int(wait * 1000))) }
                }
            }
            do { try await producer.flush() } catch { firstFailure.setIfEmpty("\(error)") }
            await producer.close()
        }
        let secs = Date().timeIntervalSince(start)
        printError(String(format: "produced %d record(s), %@ in %.2f s (%.0f records/s)%@", sent - failures.value,
                          formatBytes(Double(bytes)) as NSString, secs, Double(sent) / max(secs, 0.001),
                          failures.value > 0 ? "; \(failures.value) failed: \(firstFailure.value)" as NSString : "" as NSString))
        if failures.value > 0 { throw ExitCode(1) }
    }
}

/// Reads lines from a file handle in large chunks (much faster than `readLine` on pipes).
struct LineReader {
    let handle: FileHandle
    private var buffer: [UInt8] = []
    private var start = 0
    private var eof = false

    init(handle: FileHandle) {
        self.handle = handle
    }

    mutating func next() -> String? {
        while true {
            if let nl = buffer[start...].firstIndex(of: 0x0A) {
                var end = nl
                if end > start && buffer[end - 1] == 0x0D { end -= 1 }
                let s = String(decoding: buffer[start..<end], as: UTF8.self)
                start = nl + 1
                return s
            }
            if eof {
                guard start < buffer.count else { return nil }
                let s = String(decoding: buffer[start...], as: UTF8.self)
                start = buffer.count
                return s
            }
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            let chunk = handle.readData(ofLength: 1 << 20)
            if chunk.isEmpty { eof = true } else { buffer.append(contentsOf: chunk) }
        }
    }
}

final class NIOLockedValueBoxString: @unchecked Sendable {
    private let lock = NSLock()
    private var v = ""
    func setIfEmpty(_ s: String) { lock.lock(); if v.isEmpty { v = s }; lock.unlock() }
    var value: String { lock.lock(); defer { lock.unlock() }; return v }
}
