import Foundation
import KafkaProtocol
import KafkaWire
import NIOPosix
import Testing
import TestSupport

/// Crash safety and retention of a broker process, checked with real clients.
@Suite("Durability and retention", .timeLimit(.minutes(5)))
struct DurabilityTests {
    func kcat(_ args: [String], input: String? = nil) async throws -> ProcessResult {
        try await runProcess(try ExternalTools.require(ExternalTools.kcat, "kcat"), args, input: input.map { Data($0.utf8) }, timeout: 60)
    }

    /// Every record whose acks=all delivery was reported before `kill -9` reads back after a restart,
    /// at the offset the broker reported.
    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.python) && ExternalTools.shouldRun(ExternalTools.kcat)))
    func acknowledgedRecordsSurviveKillDashNine() async throws {
        let python = try ExternalTools.require(ExternalTools.python, "python venv")
        let broker = try await BrokerProcess(arguments: ["--default-partitions", "3"])
        defer { broker.terminate(); broker.removeData() }
        let ackLog = broker.dataDir + ".acks"
        _ = FileManager.default.createFile(atPath: ackLog, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: ackLog) }
        let producer = ChildProcess(python, [ExternalTools.packageRoot.appendingPathComponent("Tests/ConformanceTests/python/ck_ack_log.py").path,
                                             broker.bootstrap, "durable", "200000"])
        producer.standardOutput = .file(ackLog)
        producer.standardError = .null
        try producer.run()
        // Let acknowledgements accumulate, then kill the broker mid-stream.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let n = (try? String(contentsOfFile: ackLog, encoding: .utf8))?.split(separator: "\n").count ?? 0
            if n >= 5_000 { break }
            try await Task.sleep(for: .microseconds(20_000))
        }
        broker.kill9()
        try await Task.sleep(for: .microseconds(200_000))
        producer.signal(SIGKILL)
        producer.waitUntilExit()
        let acked = try String(contentsOfFile: ackLog, encoding: .utf8).split(separator: "\n")
            .filter { $0.split(separator: " ").count == 3 }
        #expect(acked.count >= 5_000, "the producer got at least 5000 acknowledgements before the kill")

        try await broker.start()
        let c = try await kcat(["-b", broker.bootstrap, "-C", "-t", "durable", "-o", "beginning", "-e", "-q", "-f", "%p %o %s\\n"])
        let stored = Set(c.stdout.split(separator: "\n").map(String.init))
        let missing = acked.filter { !stored.contains(String($0)) }
        #expect(missing.isEmpty, "\(missing.count) acknowledged records lost, e.g. \(missing.prefix(3))")
        // The log accepts new writes after recovery.
        let p = try await kcat(["-b", broker.bootstrap, "-P", "-t", "durable", "-p", "0"], input: "after-restart\n")
        #expect(p.status == 0)
    }

    /// A segment whose tail was cut mid-batch recovers to the last whole batch; the broker serves
    /// the rest and continues at the recovered end offset.
    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func tornSegmentTailIsRecovered() async throws {
        let broker = try await BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        for round in 0..<3 {
            let lines = (0..<10).map { "round\(round)-\($0)" }.joined(separator: "\n") + "\n"
            #expect(try await kcat(["-b", broker.bootstrap, "-P", "-t", "torn"], input: lines).status == 0)
        }
        broker.kill9()
        let seg = broker.dataDir + "/torn-0/00000000000000000000.log"
        let size = try FileManager.default.attributesOfItem(atPath: seg)[.size] as! Int
        let h = try #require(FileHandle(forWritingAtPath: seg))
        try h.truncate(atOffset: UInt64(size - 20))
        try h.close()
        try await broker.start()
        #expect(broker.tailOfLog().contains("cut a torn or corrupt tail"))
        let c = try await kcat(["-b", broker.bootstrap, "-C", "-t", "torn", "-o", "beginning", "-e", "-q"])
        #expect(c.stdout.split(separator: "\n").map(String.init) == (0..<2).flatMap { r in (0..<10).map { "round\(r)-\($0)" } })
        #expect(try await kcat(["-b", broker.bootstrap, "-P", "-t", "torn"], input: "next\n").status == 0)
        let after = try await kcat(["-b", broker.bootstrap, "-C", "-t", "torn", "-o", "20", "-e", "-q", "-f", "%o %s\\n"])
        #expect(after.stdout == "20 next\n")
    }

    /// Retention removes whole old segments and ListOffsets(earliest) follows the new log start.
    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func retentionDeletesOldSegmentsAndEarliestMovesForward() async throws {
        let broker = try await BrokerProcess(arguments: ["--retention-check-interval-ms", "200",
                                                   "--config", "segment.bytes=2048", "--config", "retention.bytes=6000"])
        defer { broker.terminate(); broker.removeData() }
        let lines = (0..<600).map { "retained-\($0)-" + String(repeating: "r", count: 60) }.joined(separator: "\n") + "\n"
        #expect(try await kcat(["-b", broker.bootstrap, "-P", "-t", "ret", "-X", "batch.num.messages=5"], input: lines).status == 0)
        let conn = try await KafkaConnection.connect(host: "127.0.0.1", port: broker.port, group: MultiThreadedEventLoopGroup.singleton)
        defer { Task { await conn.close() } }
        func earliest() async throws -> Int64 {
            var req = ListOffsetsRequest()
            req.replicaID = -1
            req.topics = [.init(name: "ret", partitions: [.init(partitionIndex: 0, timestamp: -2)])]
            let resp = try await conn.send(req)
            return resp.topics[0].partitions[0].offset
        }
        var start: Int64 = 0
        for _ in 0..<100 {
            start = try await earliest()
            if start > 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(start > 0, "log start offset moved forward")
        let segments = try FileManager.default.contentsOfDirectory(atPath: broker.dataDir + "/ret-0").filter { $0.hasSuffix(".log") }
        #expect(segments.count <= 5, "old segments were deleted, \(segments.count) left")
        let firstBase = segments.compactMap { Int64($0.dropLast(4)) }.min()
        #expect(firstBase == start)
        let c = try await kcat(["-b", broker.bootstrap, "-C", "-t", "ret", "-o", "beginning", "-e", "-q", "-f", "%o\\n"])
        #expect(c.stdout.split(separator: "\n").first.flatMap { Int64($0) } == start)
        #expect(c.stdout.split(separator: "\n").last == "599")
    }
}
