import Foundation
import LinkSimulator
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// The proxy's own event loop: the mirror tests share one loop thread for their brokers and
/// mirrors, and a proxy on it waits behind whatever they copy (one cause of the 29 s the loss test
/// once took, with the proxy deciding a cut only after it had reached the target).
let proxyTestLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)

/// The simulated WAN link on real sockets: bandwidth holds the sender back, loss cuts the connection.
@Suite("TCPProxy with a link model", .timeLimit(.minutes(1)))
struct TCPProxyLinkTests {
    final class Sink: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let received: NIOLockedValueBox<Int>
        init(_ received: NIOLockedValueBox<Int>) { self.received = received }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let n = unwrapInboundIn(data).readableBytes
            received.withLockedValue { $0 += n }
        }
    }

    func sink(_ received: NIOLockedValueBox<Int>) async throws -> Channel {
        try await ServerBootstrap(group: proxyTestLoops)
            .childChannelInitializer { $0.pipeline.addHandler(Sink(received)) }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    @Test func aMegabyteThroughEightMegabitsTakesAtLeastASecond() async throws {
        let received = NIOLockedValueBox(0)
        let server = try await sink(received)
        let proxy = try TCPProxy(targetHost: "127.0.0.1", targetPort: server.localAddress!.port!,
                                 link: .init(latencyNanos: 20_000_000, bitsPerSecond: 8_000_000), group: proxyTestLoops)
        let client = try await ClientBootstrap(group: proxyTestLoops).connect(host: "127.0.0.1", port: proxy.port).get()
        let started = ContinuousClock.now
        // In chunks, as a client writes: the proxy paces them on the wire one after the other.
        for _ in 0..<16 { client.write(ByteBuffer(repeating: 7, count: 62_500), promise: nil) }
        client.flush()
        #expect(await eventually(30) { received.withLockedValue { $0 } == 1_000_000 })
        let elapsed = ContinuousClock.now - started
        #expect(elapsed >= .milliseconds(950), "1 MB at 8 Mbit/s needs 1 s on the wire plus 20 ms: \(elapsed)")
        try await client.close()
        proxy.close()
        try await server.close()
    }

    @Test func lossCutsTheConnection() async throws {
        let received = NIOLockedValueBox(0)
        let server = try await sink(received)
        let proxy = try TCPProxy(targetHost: "127.0.0.1", targetPort: server.localAddress!.port!, link: .init(loss: 1), group: proxyTestLoops)
        let client = try await ClientBootstrap(group: proxyTestLoops).connect(host: "127.0.0.1", port: proxy.port).get()
        client.writeAndFlush(ByteBuffer(string: "hello"), promise: nil)
        // The link decides when the chunk is sent, not once the proxy has reached the far side.
        #expect(await eventually(10) { !client.isActive }, "every chunk is lost, so the link drops the connection")
        #expect(received.withLockedValue { $0 } == 0)
        proxy.close()
        try await server.close()
    }

    @Test func heldChunksWaitForReleaseAndDieWithACut() async throws {
        let received = NIOLockedValueBox(0)
        let server = try await sink(received)
        let proxy = try TCPProxy(targetHost: "127.0.0.1", targetPort: server.localAddress!.port!, group: proxyTestLoops)
        proxy.hold(.upstream)
        let client = try await ClientBootstrap(group: proxyTestLoops).connect(host: "127.0.0.1", port: proxy.port).get()
        try await client.writeAndFlush(ByteBuffer(string: "held")).get()
        #expect(await eventually(10) { proxy.heldChunks(.upstream) == 1 })
        #expect(received.withLockedValue { $0 } == 0, "nothing passes while held")
        proxy.release()
        #expect(await eventually(10) { received.withLockedValue { $0 } == 4 })
        // Held again, then cut: the held chunk is lost with its connection.
        proxy.hold(.upstream)
        try await client.writeAndFlush(ByteBuffer(string: "lost")).get()
        #expect(await eventually(10) { proxy.heldChunks(.upstream) == 1 })
        proxy.cutAll()
        proxy.release()
        #expect(await eventually(10) { !client.isActive })
        #expect(received.withLockedValue { $0 } == 4)
        proxy.close()
        try await server.close()
    }
}

@Suite("Free local ports", .timeLimit(.minutes(1)))
struct LocalPortTests {
    @Test func portsComeFromOutsideTheRangeOutgoingConnectionsUse() throws {
        let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
            .split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) } ?? [32_768, 60_999]
        for _ in 0..<20 {
            let p = try LocalPort.free()
            #expect(p < range[0] || p > range[1], "\(p) is outside \(range)")
            // Free: a listener can take it.
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = UInt16(p).bigEndian
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            #expect(withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0)
        }
    }
}
