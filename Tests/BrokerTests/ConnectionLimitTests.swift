import Broker
import Foundation
import KafkaProtocol
import KafkaWire
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// Connection-level bounds: how many, for how long idle, and how long a TLS handshake may take.
@Suite("Connection limits", .timeLimit(.minutes(2)))
struct ConnectionLimitTests {
    /// Whether the broker closed `fd` within `seconds` (reads return 0 or an error).
    static func closedByBroker(_ fd: Int32, within seconds: Double) async throws -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let deadline = ContinuousClock.now + .seconds(seconds)
        while true {
            // Checked once more after the deadline: on a loaded machine one sleep can outlast it.
            let last = ContinuousClock.now >= deadline
            if poll(&pfd, 1, 0) > 0 {
                var byte: UInt8 = 0
                return recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) <= 0
            }
            if last { return false }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// One whole response frame read from `fd` (its payload, correlation id first), or nil if the
    /// connection closed or nothing complete came within `seconds`.
    static func readResponse(_ fd: Int32, within seconds: Double) async throws -> ByteBuffer? {
        var got: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        let deadline = ContinuousClock.now + .seconds(seconds)
        while true {
            if got.count >= 4 {
                let size = Int(got[0]) << 24 | Int(got[1]) << 16 | Int(got[2]) << 8 | Int(got[3])
                if got.count >= 4 + size { return ByteBuffer(bytes: got[4..<(4 + size)]) }
            }
            let n = recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if n == 0 { return nil }
            if n > 0 { got.append(contentsOf: chunk[0..<n]); continue }
            guard errno == EAGAIN || errno == EWOULDBLOCK else { return nil }
            if ContinuousClock.now >= deadline { return nil }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    @Test func connectionsBeyondMaxConnectionsAreClosedAtOnce() async throws {
        let b = try await InProcessBroker { $0.maxConnections = 3 }
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for _ in 0..<3 { fds.append(try #require(connectLoopback(port: b.port))) }
        let deadline = ContinuousClock.now + .seconds(5)
        while b.server.connectionCount < 3 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(b.server.connectionCount == 3, "the first three are admitted")
        let extra = try #require(connectLoopback(port: b.port))
        defer { close(extra) }
        // With all three open, a fourth is closed at once.
        #expect(try await Self.closedByBroker(extra, within: 5), "a connection beyond max.connections is refused")
        #expect(b.server.connectionCount == 3)
        await b.stop()
    }

    @Test func idleConnectionsAreClosedAfterConnectionsMaxIdleMs() async throws {
        // 3 s idle time: short enough to keep the test quick; the connections below never wait
        // on the test's own scheduling between connecting and sending.
        // Its own event loop: the idle timer is what is under test, and on the loaded shared group
        // it fired more than 12 s late twice in CI (cause not found yet, see the issue notes).
        let loop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let b = try await InProcessBroker(group: loop) { $0.connectionsMaxIdleMs = 3_000 }
        let fd = try #require(connectLoopback(port: b.port))
        defer { close(fd) }
        #expect(try await Self.closedByBroker(fd, within: 15))
        // The topic exists before the connection under test opens, so that connection sends
        // nothing but the long poll.
        try b.server.broker.logs.createTopic("quiet", partitions: 1, replicationFactor: 1, configs: [:])
        // A connection with a request still pending (a long poll that outlasts the idle time) is
        // not idle: it gets its answer. A raw socket writes the request in the same step that
        // connects: through the client, the awaits between connecting, ApiVersions and the fetch
        // outlasted the 3 s idle time when the cooperative pool was starved in CI.
        var fetch = FetchRequest()
        fetch.maxWaitMs = 5_000
        fetch.minBytes = 1
        fetch.topics = [.init(topic: "quiet", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1024)])]
        let frame = try InProcessBroker.rawFrame(fetch, version: 11)
        let conn = try #require(connectLoopback(port: b.port))
        defer { close(conn) }
        let started = ContinuousClock.now
        let written = frame.withUnsafeReadableBytes { write(conn, $0.baseAddress, $0.count) }
        #expect(written == frame.readableBytes)
        var payload = try #require(try await Self.readResponse(conn, within: 20), "the long poll is answered, not cut off")
        #expect(ContinuousClock.now - started >= .seconds(3), "the long poll outlasted the idle time")
        _ = payload.readInteger(as: Int32.self)  // correlation id
        let answer = try FetchResponse(from: &payload, version: 11)
        #expect(answer.responses.first?.partitions.first?.errorCode == ErrorCode.none)
        await b.stop()
        try await loop.shutdownGracefully()
    }

    @Test func aTLSHandshakeThatNeverStartsIsCutOff() async throws {
        let certs = try await makeTestCertificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let b = try await InProcessBroker { config in
            config.listeners = [try! ListenerAddress(parsing: "SSL://127.0.0.1:0")]
            config.tls = TLSSettings(certificatePath: "\(certs)/broker.pem", keyPath: "\(certs)/broker.key")
            config.tlsHandshakeTimeoutMs = 300
        }
        let fd = try #require(connectLoopback(port: b.port))
        defer { close(fd) }
        // Connected, but no ClientHello ever comes.
        #expect(try await Self.closedByBroker(fd, within: 5), "the broker closes a connection stuck before its handshake")
        await b.stop()
    }
}
