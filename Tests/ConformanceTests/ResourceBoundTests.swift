import Foundation
import KafkaProtocol
import KafkaWire
import NIOCore
import Testing
import TestSupport

/// What hostile or careless clients cost the broker: bounded memory, and other clients keep working.
///
/// Bound stated and checked here: the broker's peak resident memory (VmHWM) stays under 768 MiB,
/// well under 1 GiB, through each load.
@Suite("Resource bounds", .serialized, .enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)), .timeLimit(.minutes(5)))
struct ResourceBoundTests {
    static let rssBoundMiB = 768

    /// Peak and current resident memory of a process, in MiB, from /proc.
    static func memory(_ pid: Int32) -> (peak: Int, now: Int) {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return (0, 0) }
        func field(_ name: String) -> Int {
            let line = text.split(separator: "\n").first { $0.hasPrefix(name + ":") } ?? ""
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) / 1024
        }
        return (field("VmHWM"), field("VmRSS"))
    }

    /// Another client produces and reads back while the load is on.
    func otherClientStillWorks(_ kcat: String, _ broker: BrokerProcess, _ tag: String) async throws {
        let p = try await runProcess(kcat, ["-b", broker.bootstrap, "-P", "-t", "bystander", "-p", "0", "-X", "message.timeout.ms=20000"],
                               input: Data("\(tag)\n".utf8), timeout: 40)
        #expect(p.status == 0, "produce during \(tag): \(p.stderr)")
        let c = try await runProcess(kcat, ["-b", broker.bootstrap, "-C", "-t", "bystander", "-p", "0", "-o", "beginning", "-e", "-q"], timeout: 40)
        #expect(c.stdout.split(separator: "\n").contains(Substring(tag)), "consume during \(tag): \(c.stderr)")
    }

    @Test func fiveThousandIdleConnectionsCostBoundedMemory() async throws {
        let kcat = try ExternalTools.require(ExternalTools.kcat, "kcat")
        let broker = try BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for _ in 0..<5_000 {
            guard let fd = connectLoopback(port: broker.port) else { break }
            fds.append(fd)
        }
        #expect(fds.count == 5_000, "opened \(fds.count) connections")
        // The broker has accepted them all (a request on the last one is answered).
        let probe = StructureFuzzTests.send(port: broker.port, ByteBuffer(bytes: [0, 18, 0, 0, 0, 0, 0, 1, 0, 0]))
        #expect(probe.answered)
        try await otherClientStillWorks(kcat, broker, "idle-5000")
        let m = Self.memory(broker.pid)
        #expect(m.peak < Self.rssBoundMiB, "broker peak RSS \(m.peak) MiB with 5000 idle connections")
        print("resource bound: 5000 idle connections: broker RSS \(m.now) MiB, peak \(m.peak) MiB")
    }

    @Test func aClientThatPipelinesFetchesAndNeverReadsCostsBoundedMemory() async throws {
        let kcat = try ExternalTools.require(ExternalTools.kcat, "kcat")
        let broker = try BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        let lines = (0..<4_000).map { "r\($0)-" + String(repeating: "x", count: 900) }
        #expect(try await runProcess(kcat, ["-b", broker.bootstrap, "-P", "-t", "hoard", "-p", "0", "-X", "batch.num.messages=20"],
                               input: Data((lines.joined(separator: "\n") + "\n").utf8)).status == 0)
        // Fetches of 30 KB each, answered from memory (below the sendfile threshold), sent back to
        // back without ever reading a response.
        var fetch = FetchRequest()
        fetch.maxWaitMs = 0
        fetch.maxBytes = 30_000
        fetch.topics = [.init(topic: "hoard", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 30_000)])]
        var w = KafkaWriter()
        let at = KafkaFrame.begin(&w)
        RequestHeader(apiKey: .fetch, apiVersion: 11, correlationID: 1, clientID: "hoarder").encode(to: &w, headerVersion: 1)
        try fetch.encode(to: &w, version: 11)
        KafkaFrame.finish(&w, sizeAt: at)
        let frame = Array(w.buffer.readableBytesView)
        let fd = try #require(connectLoopback(port: broker.port, nonBlocking: true))
        defer { close(fd) }
        var sent = 0
        let deadline = Date().addingTimeInterval(15)
        // Keep writing until the broker stops reading (our socket's send buffer stays full).
        var stalled = 0
        while Date() < deadline && stalled < 200 {
            let n = frame.withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n == frame.count { sent += 1; stalled = 0 } else { stalled += 1; try await Task.sleep(for: .microseconds(10_000)) }
            if n > 0 && n < frame.count { break }
        }
        #expect(sent < 50_000, "the broker stopped reading from a client that never reads (\(sent) fetches accepted)")
        try await otherClientStillWorks(kcat, broker, "hoarder")
        let m = Self.memory(broker.pid)
        #expect(m.peak < Self.rssBoundMiB, "broker peak RSS \(m.peak) MiB after \(sent) unread fetches")
        print("resource bound: \(sent) pipelined unread fetches: broker RSS \(m.now) MiB, peak \(m.peak) MiB")
    }

    @Test func hundredsOfConnectionsTricklingHugeRequestsCostBoundedMemory() async throws {
        let kcat = try ExternalTools.require(ExternalTools.kcat, "kcat")
        let broker = try BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        // 300 connections each announce a 100 MiB Produce and send its body slowly.
        let announced = 100 * 1024 * 1024 - 1
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for _ in 0..<300 {
            guard let fd = connectLoopback(port: broker.port, nonBlocking: true) else { break }
            let header: [UInt8] = withUnsafeBytes(of: Int32(announced).bigEndian, Array.init) + [0, 0, 0, 9, 0, 0, 0, 1, 0, 0]
            _ = header.withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            fds.append(fd)
        }
        #expect(fds.count == 300)
        let chunk = [UInt8](repeating: 0x41, count: 64 * 1024)
        var delivered = 0
        let perConnection = 4 * 1024 * 1024
        let start = Date()
        var sentBy = [Int](repeating: 0, count: fds.count)
        while Date().timeIntervalSince(start) < 12 {
            var progress = false
            for (i, fd) in fds.enumerated() where sentBy[i] < perConnection {
                let n = chunk.withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                if n > 0 { sentBy[i] += n; delivered += n; progress = true }
            }
            if !progress { break }
            try await Task.sleep(for: .microseconds(20_000))
        }
        try await otherClientStillWorks(kcat, broker, "trickle")
        #expect(broker.isRunning)
        let m = Self.memory(broker.pid)
        #expect(m.peak < Self.rssBoundMiB, "broker peak RSS \(m.peak) MiB while 300 connections sent \(delivered >> 20) MiB of unfinished requests")
        print("resource bound: 300 trickling 100 MiB requests (\(delivered >> 20) MiB sent): broker RSS \(m.now) MiB, peak \(m.peak) MiB")
    }
}
