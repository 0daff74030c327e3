import Foundation
import KafkaProtocol
import Testing
import TestSupport

/// Thousands of random and mutated frames against a live broker process; afterwards the broker must
/// still be running, still hold every record acknowledged before, and still serve a real client.
@Suite("Bad input", .timeLimit(.minutes(5)))
struct FuzzTests {
    /// Opens a TCP connection to 127.0.0.1:port, writes `bytes`, reads whatever comes back within a
    /// short time, and closes. Returns the bytes read (nil if the connection could not be made).
    static func exchange(port: Int, _ bytes: [UInt8], readTimeoutMs: Int32 = 30) -> [UInt8]? {
        guard let fd = connectLoopback(port: port) else { return nil }
        defer { close(fd) }
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while poll(&pfd, 1, readTimeoutMs) > 0 {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    /// Well-formed requests of the kinds clients send, as seeds for mutation.
    static func seeds() throws -> [[UInt8]] {
        func frame<R: KafkaRequestMessage>(_ r: R, _ v: Int16) throws -> [UInt8] {
            var w = KafkaWriter()
            let at = w.buffer.writerIndex
            w.buffer.writeInteger(Int32(0))
            RequestHeader(apiKey: R.apiKey, apiVersion: v, correlationID: 1, clientID: "fuzz").encode(to: &w, headerVersion: R.requestHeaderVersion(v))
            try r.encode(to: &w, version: v)
            w.buffer.setInteger(Int32(w.buffer.readableBytes - 4), at: at, endianness: .big)
            return Array(w.buffer.readableBytesView)
        }
        var batch = RecordBatchBuilder()
        for i in 0..<5 { batch.append(key: nil, value: .init(string: "fuzz-\(i)"), timestamp: 1) }
        let records = try batch.build()
        var produce = ProduceRequest()
        produce.acks = 1
        produce.timeoutMs = 1000
        produce.topicData = [.init(name: "fuzzed", partitionData: [.init(index: 0, records: .bytes(records))])]
        var fetch = FetchRequest()
        fetch.maxWaitMs = 0
        fetch.topics = [.init(topic: "fuzzed", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)])]
        var metadata = MetadataRequest()
        metadata.topics = [.init(name: "fuzzed")]
        var create = CreateTopicsRequest()
        create.topics = [.init(name: "fuzz-created", numPartitions: 1, replicationFactor: 1)]
        var list = ListOffsetsRequest()
        list.topics = [.init(name: "fuzzed", partitions: [.init(partitionIndex: 0, timestamp: -1)])]
        return [
            try frame(ApiVersionsRequest(), 3), try frame(ApiVersionsRequest(), 0),
            try frame(metadata, 12), try frame(metadata, 4),
            try frame(produce, 9), try frame(produce, 7), try frame(produce, 3),
            try frame(fetch, 12), try frame(fetch, 4), try frame(create, 7), try frame(create, 4),
            try frame(list, 7),
        ]
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)), .timeLimit(.minutes(5)))
    func brokerSurvivesThousandsOfBadFrames() async throws {
        let kcat = try ExternalTools.require(ExternalTools.kcat, "kcat")
        let broker = try await BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        let before = (0..<50).map { "before-\($0)" }
        #expect(try await runProcess(kcat, ["-b", broker.bootstrap, "-P", "-t", "fuzzed"], input: Data((before.joined(separator: "\n") + "\n").utf8)).status == 0)

        // MERIDIAN_FUZZ_SEED replays a run; the failure messages name the seed.
        let seed = ProcessInfo.processInfo.environment["MERIDIAN_FUZZ_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
        var rng = SplitMix64(seed: seed)
        let seeds = try Self.seeds()
        var sent = 0
        for i in 0..<3_000 {
            var frame: [UInt8]
            switch i % 6 {
            case 0:
                // Pure noise, sometimes with a plausible length prefix.
                frame = (0..<Int.random(in: 1...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if rng.next() % 2 == 0 { frame = withUnsafeBytes(of: Int32(frame.count).bigEndian, Array.init) + frame }
            case 1, 2, 3:
                // A real request with 1–8 random bytes changed (length prefix kept or not).
                frame = seeds[Int(rng.next() % UInt64(seeds.count))]
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    let at = Int.random(in: (i % 2 == 0 ? 4 : 0)..<frame.count, using: &rng)
                    frame[at] = UInt8.random(in: 0...255, using: &rng)
                }
            case 4:
                // Truncated or extended real requests, length prefix unchanged.
                frame = seeds[Int(rng.next() % UInt64(seeds.count))]
                if rng.next() % 2 == 0 {
                    frame = Array(frame.prefix(Int.random(in: 1..<frame.count, using: &rng)))
                } else {
                    frame += (0..<Int.random(in: 1...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                }
            default:
                // Absurd sizes: negative, tiny, just above the 100 MiB limit, huge; unknown keys and versions.
                let sizes: [Int32] = [-1, 0, 3, 104_857_601, Int32.max]
                let header: [UInt8] = [0, UInt8.random(in: 0...255, using: &rng), 0x7F, 0xFF, 0, 0, 0, 9, 0xFF, 0xFF]
                frame = withUnsafeBytes(of: sizes[i % sizes.count].bigEndian, Array.init) + header
                if i % 12 == 5 {
                    // An unknown API key or version in an otherwise valid frame.
                    frame = withUnsafeBytes(of: Int32(10).bigEndian, Array.init) + [0x0F, 0xA0, 0, 1, 0, 0, 0, 1, 0xFF, 0xFF]
                }
            }
            if Self.exchange(port: broker.port, frame, readTimeoutMs: 5) != nil { sent += 1 }
            await Task.yield()
        }
        #expect(sent >= 2_900, "seed \(seed): most frames reached the broker")
        #expect(broker.isRunning, "seed \(seed): broker process is alive after the fuzzing:\n\(broker.tailOfLog())")
        let log = (try? String(contentsOfFile: broker.logPath, encoding: .utf8)) ?? ""
        #expect(!log.contains("cannot encode response") && !log.contains("internal error"), "seed \(seed): no broker bug surfaced")
        #expect(log.contains("closing connection"), "seed \(seed): bad frames were answered by closing connections")

        // Still serving a real client, and nothing acknowledged before was lost.
        let md = try await runProcess(kcat, ["-b", broker.bootstrap, "-L"])
        #expect(md.status == 0)
        #expect(try await runProcess(kcat, ["-b", broker.bootstrap, "-P", "-t", "fuzzed", "-p", "0"], input: Data("after\n".utf8)).status == 0)
        let c = try await runProcess(kcat, ["-b", broker.bootstrap, "-C", "-t", "fuzzed", "-p", "0", "-o", "beginning", "-e", "-q"])
        let values = c.stdout.split(separator: "\n").map(String.init)
        #expect(Array(values.prefix(50)) == before, "seed \(seed)")
        #expect(values.last == "after", "seed \(seed)")
        #expect(values.allSatisfy { $0.hasPrefix("before-") || $0.hasPrefix("fuzz-") || $0 == "after" }, "seed \(seed)")
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func oversizedFrameClosesTheConnectionBeforeBuffering() async throws {
        let broker = try await BrokerProcess(arguments: ["--socket-request-max-bytes", "1048576"])
        defer { broker.terminate(); broker.removeData() }
        // Announce 2 MiB but send only the header: the broker must close at once, not wait for the body.
        let frame = withUnsafeBytes(of: Int32(2 * 1024 * 1024).bigEndian, Array.init) + [0, 18, 0, 3, 0, 0, 0, 1]
        let start = Date()
        let reply = Self.exchange(port: broker.port, frame, readTimeoutMs: 5_000)
        #expect(reply == [], "no response bytes, just a close")
        #expect(Date().timeIntervalSince(start) < 4, "closed promptly")
        #expect(broker.tailOfLog().contains("socket.request.max.bytes"))
    }
}
