import Foundation
import KafkaProtocol
import NIOCore
import Testing
import TestSupport

/// Structure-aware fuzzing: thousands of requests that are well framed and mostly well formed, with
/// hostile values where a client controls them — fields inside valid record batches (CRC fixed up,
/// with and without producer ids), extreme numbers, strings and arrays in group and admin requests,
/// and length prefixes overwritten inside the body. The broker process must answer or close each
/// connection, never stop, and afterwards still serve kcat with nothing acknowledged lost.
@Suite("Structure-aware fuzzing", .timeLimit(.minutes(8)))
struct StructureFuzzTests {
    struct Fuzzer {
        var rng: SplitMix64

        mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
        mutating func chance(_ n: Int) -> Bool { int(0...(n - 1)) == 0 }

        mutating func i64() -> Int64 {
            [Int64.min, Int64.min + 1, -2, -1, 0, 1, Int64(Int32.max), Int64(Int32.max) + 1, Int64.max - 1, Int64.max,
             Int64(int(0...1_000_000)), Int64(bitPattern: rng.next())][int(0...11)]
        }

        mutating func i32() -> Int32 {
            [Int32.min, -2, -1, 0, 1, 2, 100, Int32.max - 1, Int32.max, Int32(truncatingIfNeeded: rng.next())][int(0...9)]
        }

        mutating func i16() -> Int16 { [Int16.min, -1, 0, 1, 5, Int16.max - 1, Int16.max][int(0...6)] }

        mutating func string() -> String {
            switch int(0...6) {
            case 0: return ""
            case 1: return String(repeating: "x", count: int(32_700...40_000))
            case 2: return "group-\(int(0...3))"
            case 3: return String(repeating: "é", count: int(1...300))
            case 4: return "../../etc"
            case 5: return "fuzz-topic-\(int(0...5))"
            default: return String((0..<int(1...40)).map { _ in Character(UnicodeScalar(UInt8(int(33...126)))) })
            }
        }

        mutating func topic() -> TopicName {
            chance(5) ? TopicName(string()) : ["fuzz-a", "fuzz-b", "__consumer_offsets", "acked"][int(0...3)]
        }

        /// Topics admin requests may change: never "acked", whose records the test checks at the end.
        mutating func adminTopic() -> TopicName {
            chance(5) ? TopicName(string()) : ["fuzz-a", "fuzz-b", "__consumer_offsets", "fuzz-new-1"][int(0...3)]
        }

        mutating func bytes() -> ByteBuffer {
            ByteBuffer(bytes: (0..<int(0...64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }

        /// A valid batch, then one header field or record byte changed; the CRC is recomputed
        /// most of the time so only field checks can catch it.
        mutating func batch() -> ByteBuffer {
            let producer = chance(2)
            var b = RecordBatchBuilder(producerID: producer ? Int64(int(0...3)) : -1, producerEpoch: producer ? Int16(int(0...1)) : -1,
                                       baseSequence: producer ? Int32(int(0...10)) : -1)
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            for i in 0..<int(1...5) {
                b.append(key: chance(2) ? ByteBuffer(string: "k\(i)") : nil, value: ByteBuffer(string: "fuzz-\(i)"),
                         headers: chance(4) ? [RecordHeader(key: "h", value: ByteBuffer(string: "v"))] : [], timestamp: now + Int64(i))
            }
            var out = (try? b.build(compression: chance(4) ? .gzip : .none)) ?? ByteBuffer()
            let at = out.readerIndex
            switch int(0...13) {
            case 0: out.setInteger(i64(), at: at, endianness: .big)                          // baseOffset
            case 1: out.setInteger(i32(), at: at + 8, endianness: .big)                      // batchLength
            case 2: out.setInteger(i32(), at: at + 12, endianness: .big)                     // partitionLeaderEpoch
            case 3:
                // Attributes. Codecs 2–4 (snappy, lz4, zstd) are stored as sent without being
                // inflated (this build reads none and gzip only), so garbage under those codec bits
                // would be accepted and handed to consumers; the fuzzer keeps to codecs the broker
                // can check and to invalid ones (5–7), which it must refuse.
                let codec = Int16([0, 1, 5, 6, 7][int(0...4)])
                out.setInteger((Int16(truncatingIfNeeded: i32()) & ~0x7) | codec, at: at + 21, endianness: .big)
            case 4: out.setInteger(i32(), at: at + 23, endianness: .big)                     // lastOffsetDelta
            case 5: out.setInteger(i64(), at: at + 27, endianness: .big)                     // baseTimestamp
            case 6: out.setInteger(i64(), at: at + 35, endianness: .big)                     // maxTimestamp
            case 7: out.setInteger(i64(), at: at + 43, endianness: .big)                     // producerId
            case 8: out.setInteger(i16(), at: at + 51, endianness: .big)                     // producerEpoch
            case 9: out.setInteger(i32(), at: at + 53, endianness: .big)                     // baseSequence
            case 10: out.setInteger(i32(), at: at + 57, endianness: .big)                    // recordsCount
            case 11, 12:
                // A byte inside the records.
                if out.readableBytes > RecordBatchHeader.size {
                    out.setInteger(UInt8(truncatingIfNeeded: rng.next()), at: at + int(RecordBatchHeader.size...(out.readableBytes - 1)))
                }
            default: break
            }
            if !chance(8), out.readableBytes > 21 {
                let crc = CRC32C.checksum(out, at: at + 21, length: out.readableBytes - 21)
                out.setInteger(crc, at: at + 17, endianness: .big)
            }
            return out
        }

        /// One request of a random API with hostile field values, encoded correctly.
        mutating func request() -> (ApiKey, ByteBuffer) {
            func frame<R: KafkaRequestMessage>(_ r: R, _ v: Int16) -> (ApiKey, ByteBuffer) {
                var w = KafkaWriter()
                RequestHeader(apiKey: R.apiKey, apiVersion: v, correlationID: 7, clientID: "fuzz").encode(to: &w, headerVersion: R.requestHeaderVersion(v))
                do { try r.encode(to: &w, version: v) } catch { return (R.apiKey, ByteBuffer()) }
                return (R.apiKey, w.buffer)
            }
            func version<R: KafkaRequestMessage>(_: R.Type, _ range: ClosedRange<Int16>) -> Int16 { Int16(int(Int(range.lowerBound)...Int(range.upperBound))) }
            switch int(0...20) {
            case 0, 1, 2, 3:
                var r = ProduceRequest()
                r.acks = chance(6) ? i16() : [-1, 1][int(0...1)]
                r.timeoutMs = 1000
                r.topicData = (0..<int(1...2)).map { _ in
                    .init(name: topic(), partitionData: (0..<int(1...3)).map { _ in .init(index: chance(5) ? i32() : Int32(int(0...1)), records: .bytes(batch())) })
                }
                return frame(r, version(ProduceRequest.self, 3...9))
            case 4:
                var r = FetchRequest()
                r.maxWaitMs = chance(4) ? Int32(int(0...50)) : 0
                r.minBytes = chance(3) ? i32() : 1
                r.maxBytes = i32()
                r.isolationLevel = Int8(int(0...1))
                r.topics = (0..<int(0...3)).map { _ in
                    .init(topic: topic(), partitions: (0..<int(0...4)).map { _ in
                        .init(partition: chance(3) ? i32() : 0, currentLeaderEpoch: chance(3) ? i32() : -1, fetchOffset: i64(),
                              lastFetchedEpoch: chance(3) ? i32() : -1, partitionMaxBytes: i32())
                    })
                }
                return frame(r, version(FetchRequest.self, 4...12))
            case 5:
                var r = ListOffsetsRequest()
                r.topics = (0..<int(0...3)).map { _ in
                    .init(name: topic(), partitions: (0..<int(0...3)).map { _ in .init(partitionIndex: i32(), currentLeaderEpoch: i32(), timestamp: i64()) })
                }
                return frame(r, version(ListOffsetsRequest.self, 1...7))
            case 6:
                var r = MetadataRequest()
                r.topics = chance(4) ? nil : (0..<int(0...4)).map { _ in .init(name: topic()) }
                r.allowAutoTopicCreation = chance(2)
                return frame(r, version(MetadataRequest.self, 0...12))
            case 7:
                var r = CreateTopicsRequest()
                r.topics = (0..<int(0...3)).map { _ in
                    .init(name: chance(2) ? TopicName("fuzz-new-\(int(0...9))") : topic(), numPartitions: chance(2) ? Int32(int(-1...4)) : i32(),
                          replicationFactor: chance(2) ? 1 : i16(),
                          assignments: chance(4) ? [.init(partitionIndex: i32(), brokerIDs: [BrokerID(i32())])] : [],
                          configs: chance(3) ? [.init(name: ["segment.bytes", "retention.ms", "cleanup.policy", string()][int(0...3)], value: chance(2) ? "\(i64())" : string())] : [])
                }
                return frame(r, version(CreateTopicsRequest.self, 2...7))
            case 8:
                var r = DeleteTopicsRequest()
                r.topicNames = (0..<int(0...2)).map { _ in chance(2) ? TopicName("fuzz-new-\(int(0...9))") : adminTopic() }
                return frame(r, version(DeleteTopicsRequest.self, 1...5))
            case 9:
                var r = CreatePartitionsRequest()
                r.topics = [.init(name: adminTopic(), count: i32(), assignments: chance(3) ? [.init(brokerIDs: [BrokerID(i32())])] : nil)]
                return frame(r, version(CreatePartitionsRequest.self, 0...3))
            case 10:
                var r = IncrementalAlterConfigsRequest()
                r.resources = [.init(resourceType: Int8(truncatingIfNeeded: int(0...4)), resourceName: adminTopic().rawValue,
                                     configs: [.init(name: ["retention.ms", "cleanup.policy", "max.message.bytes", string()][int(0...3)],
                                                     configOperation: Int8(truncatingIfNeeded: int(-1...4)), value: chance(3) ? nil : "\(i64())")])]
                return frame(r, version(IncrementalAlterConfigsRequest.self, 0...1))
            case 11:
                var r = DeleteRecordsRequest()
                r.topics = [.init(name: adminTopic(), partitions: [.init(partitionIndex: i32(), offset: i64())])]
                return frame(r, version(DeleteRecordsRequest.self, 0...2))
            case 12:
                var r = InitProducerIDRequest()
                r.transactionalID = chance(4) ? string() : nil
                r.producerID = ProducerID(i64())
                r.producerEpoch = i16()
                r.transactionTimeoutMs = i32()
                return frame(r, version(InitProducerIDRequest.self, 0...4))
            case 13:
                var r = JoinGroupRequest()
                r.groupID = GroupID(string())
                r.sessionTimeoutMs = chance(2) ? 10_000 : i32()
                r.rebalanceTimeoutMs = chance(2) ? 10_000 : i32()
                r.memberID = chance(2) ? "" : string()
                r.groupInstanceID = chance(3) ? string() : nil
                r.protocolType = chance(2) ? "consumer" : string()
                r.protocols = (0..<int(0...3)).map { _ in .init(name: chance(2) ? "range" : string(), metadata: bytes()) }
                return frame(r, version(JoinGroupRequest.self, 0...7))
            case 14:
                var r = SyncGroupRequest()
                r.groupID = GroupID(string())
                r.generationID = i32()
                r.memberID = string()
                r.groupInstanceID = chance(3) ? string() : nil
                r.protocolType = chance(2) ? "consumer" : nil
                r.protocolName = chance(2) ? string() : nil
                r.assignments = (0..<int(0...3)).map { _ in .init(memberID: string(), assignment: bytes()) }
                return frame(r, version(SyncGroupRequest.self, 0...5))
            case 15:
                var r = HeartbeatRequest()
                r.groupID = GroupID(string())
                r.generationID = i32()
                r.memberID = string()
                r.groupInstanceID = chance(2) ? string() : nil
                return frame(r, version(HeartbeatRequest.self, 0...4))
            case 16:
                var r = LeaveGroupRequest()
                r.groupID = GroupID(string())
                r.memberID = string()
                r.members = (0..<int(0...3)).map { _ in .init(memberID: string(), groupInstanceID: chance(2) ? string() : nil) }
                return frame(r, version(LeaveGroupRequest.self, 0...4))
            case 17:
                var r = OffsetCommitRequest()
                r.groupID = GroupID(chance(3) ? "group-\(int(0...3))" : string())
                r.generationIDOrMemberEpoch = chance(2) ? -1 : i32()
                r.memberID = chance(2) ? "" : string()
                r.groupInstanceID = chance(4) ? string() : nil
                r.topics = (0..<int(0...3)).map { _ in
                    .init(name: topic(), partitions: (0..<int(0...3)).map { _ in
                        .init(partitionIndex: chance(2) ? 0 : i32(), committedOffset: i64(), committedLeaderEpoch: i32(),
                              committedMetadata: chance(3) ? string() : "")
                    })
                }
                return frame(r, version(OffsetCommitRequest.self, 2...8))
            case 18:
                var r = OffsetFetchRequest()
                r.groupID = GroupID(string())
                r.topics = chance(3) ? nil : [.init(name: topic(), partitionIndexes: (0..<int(0...3)).map { _ in i32() })]
                return frame(r, version(OffsetFetchRequest.self, 1...7))
            case 19:
                var r = DescribeGroupsRequest()
                r.groups = (0..<int(0...3)).map { _ in GroupID(string()) }
                return frame(r, version(DescribeGroupsRequest.self, 0...5))
            default:
                var r = OffsetForLeaderEpochRequest()
                r.topics = [.init(topic: topic(), partitions: (0..<int(0...3)).map { _ in
                    .init(partition: chance(2) ? 0 : i32(), currentLeaderEpoch: i32(), leaderEpoch: i32())
                })]
                return frame(r, version(OffsetForLeaderEpochRequest.self, 2...4))
            }
        }

        /// Overwrites a few bytes of the body (after the 8-byte request header prefix) with values
        /// that length prefixes and counts find hard: -1, 0x7FFF, 0x8000, 0xFFFF, huge int32s, varint bytes.
        mutating func corruptLengths(_ body: inout ByteBuffer) {
            guard body.readableBytes > 12 else { return }
            for _ in 0..<int(1...3) {
                let at = body.readerIndex + int(8...(body.readableBytes - 1))
                let room = body.writerIndex - at
                switch int(0...4) {
                case 0 where room >= 2: body.setInteger([Int16(-1), 0x7FFF, Int16.min, -2][int(0...3)], at: at, endianness: .big)
                case 1 where room >= 4: body.setInteger([Int32(-1), Int32.max, 0x0100_0000, -2][int(0...3)], at: at, endianness: .big)
                case 2: body.setInteger([UInt8(0xFF), 0x80, 0x00, 0x7F][int(0...3)], at: at)
                case 3 where room >= 5: body.setBytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F], at: at)
                default: body.setInteger(UInt8(truncatingIfNeeded: rng.next()), at: at)
                }
            }
        }
    }

    /// A connection that sends one request followed by an ApiVersions probe and waits until the
    /// probe is answered (the request was handled) or the broker closed the connection.
    static func send(port: Int, _ body: ByteBuffer) -> (answered: Bool, closed: Bool) {
        guard let fd = connectLoopback(port: port) else { return (false, false) }
        defer { close(fd) }
        var out: [UInt8] = withUnsafeBytes(of: Int32(body.readableBytes).bigEndian, Array.init) + Array(body.readableBytesView)
        // ApiVersions v0 with correlation id 0x0BADF00D.
        out += [0, 0, 0, 14, 0, 18, 0, 0, 0x0B, 0xAD, 0xF0, 0x0D, 0, 4] + Array("fuzz".utf8)
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, out.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
        var received: [UInt8] = []
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var buf = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(0.3)
        while Date() < deadline {
            guard poll(&pfd, 1, 50) > 0 else { continue }
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { return (false, true) }
            received += buf[0..<n]
            // Responses in order: the probe's correlation id appears once every earlier response is in.
            var i = 0
            while i + 8 <= received.count {
                let size = Int(Int32(bigEndian: received[i..<i + 4].withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }))
                let corr = received[i + 4..<i + 8]
                if Array(corr) == [0x0B, 0xAD, 0xF0, 0x0D] { return (true, false) }
                i += 4 + max(0, size)
            }
        }
        return (false, false)
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func brokerSurvivesThousandsOfStructureAwareRequests() async throws {
        let kcat = try ExternalTools.require(ExternalTools.kcat, "kcat")
        let broker = try await BrokerProcess(arguments: ["--group-initial-rebalance-delay-ms", "0", "--offsets-topic-partitions", "4"])
        defer { broker.terminate(); broker.removeData() }
        let acked = (0..<100).map { "acked-\($0)" }
        let p = try await runProcess(kcat, ["-b", broker.bootstrap, "-P", "-t", "acked", "-X", "acks=all"],
                               input: Data((acked.joined(separator: "\n") + "\n").utf8))
        #expect(p.status == 0, "\(p.stderr)")
        // MERIDIAN_FUZZ_SEED replays a run; every failure message names the seed.
        let seed = ProcessInfo.processInfo.environment["MERIDIAN_FUZZ_SEED"].flatMap { UInt64($0) }
            ?? UInt64(Date().timeIntervalSince1970)
        var fuzzer = Fuzzer(rng: SplitMix64(seed: seed))
        var stats: [ApiKey: (answered: Int, closed: Int)] = [:]
        for i in 0..<4_000 {
            var (key, body) = fuzzer.request()
            guard body.readableBytes > 0 else { continue }
            if i % 4 == 3 { fuzzer.corruptLengths(&body) }
            let r = Self.send(port: broker.port, body)
            await Task.yield()
            stats[key, default: (0, 0)].answered += r.answered ? 1 : 0
            stats[key, default: (0, 0)].closed += r.closed ? 1 : 0
            if i % 500 == 499 {
                #expect(broker.isRunning, "the broker stopped after \(i) requests:\n\(broker.tailOfLog())")
                if !broker.isRunning { return }
            }
        }
        #expect(broker.isRunning, "broker process is alive:\n\(broker.tailOfLog())")
        let produce = stats[.produce] ?? (0, 0), join = stats[.joinGroup] ?? (0, 0)
        #expect(produce.answered > 300 && join.answered > 50, "hostile requests were answered, not just dropped: \(stats)")
        let log = (try? String(contentsOfFile: broker.logPath, encoding: .utf8)) ?? ""
        #expect(!log.contains("cannot encode response") && !log.contains("internal error"), "no broker bug surfaced")

        // Still serving a real client, and nothing acknowledged before was lost.
        #expect(try await runProcess(kcat, ["-b", broker.bootstrap, "-L"]).status == 0)
        #expect(try await runProcess(kcat, ["-b", broker.bootstrap, "-P", "-t", "acked", "-p", "0"], input: Data("after\n".utf8)).status == 0)
        let c = try await runProcess(kcat, ["-b", broker.bootstrap, "-C", "-t", "acked", "-p", "0", "-o", "beginning", "-e", "-q"], timeout: 60)
        let values = c.stdout.split(separator: "\n").map(String.init)
        #expect(Array(values.prefix(100)) == acked, "seed \(seed): the acknowledged records are intact: \(c.stderr)")
        #expect(values.last == "after", "seed \(seed): \(values.suffix(6))")
        if values.last != "after" {
            // What the consumer saw, for the post-mortem.
            let d = try await runProcess(kcat, ["-b", broker.bootstrap, "-C", "-t", "acked", "-p", "0", "-o", "beginning", "-e", "-q",
                                                "-d", "fetch,protocol,topic", "-X", "log_level=7"], timeout: 15)
            Issue.record("seed \(seed): kcat debug:\n\(d.stderr.suffix(6000))\nbroker log:\n\(broker.tailOfLog())")
        }
    }
}
