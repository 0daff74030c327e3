import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP proxy standing in for a WAN link: forwards every connection to a target, can add latency, and
/// can cut every open connection at once (as a flaky WAN link would).
public final class TCPProxy: @unchecked Sendable {
    public let port: Int
    private let server: Channel
    private let registry = ConnectionRegistry()
    private let delay = NIOLockedValueBox<TimeAmount>(.zero)
    private let received = NIOLockedValueBox<Int>(0)

    public init(targetHost: String, targetPort: Int, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        let registry = self.registry
        let delay = self.delay
        let received = self.received
        server = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { inbound in
                inbound.pipeline.addHandler(InboundSide(targetHost: targetHost, targetPort: targetPort, registry: registry, delay: delay,
                                                        received: received))
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        port = server.localAddress!.port!
    }

    /// Adds `amount` of latency to every forwarded chunk in both directions.
    public func setDelay(_ amount: TimeAmount) { delay.withLockedValue { $0 = amount } }

    /// Closes every connection currently open through the proxy; new connections still work.
    public func cutAll() {
        for c in registry.takeAll() { c.close(promise: nil) }
    }

    public var openConnections: Int { registry.count / 2 }

    /// Bytes the proxy has received from its clients so far (forwarded, or held by the delay).
    public var bytesFromClients: Int { received.withLockedValue { $0 } }

    public func close() {
        cutAll()
        try? server.close().wait()
    }
}

final class ConnectionRegistry: @unchecked Sendable {
    private let lock = NIOLock()
    private var channels: [ObjectIdentifier: Channel] = [:]
    func add(_ c: Channel) {
        lock.withLock { channels[ObjectIdentifier(c)] = c }
        c.closeFuture.whenComplete { [weak self] _ in self?.lock.withLock { _ = self?.channels.removeValue(forKey: ObjectIdentifier(c)) } }
    }
    func takeAll() -> [Channel] { lock.withLock { defer { channels = [:] }; return Array(channels.values) } }
    var count: Int { lock.withLock { channels.count } }
}

/// Writes `buf` to `peer`, after `delay` if there is one.
private func forward(_ buf: ByteBuffer, to peer: Channel, on loop: EventLoop, delay: NIOLockedValueBox<TimeAmount>) {
    let d = delay.withLockedValue { $0 }
    if d == .zero {
        peer.writeAndFlush(buf, promise: nil)
    } else {
        loop.scheduleTask(in: d) { peer.writeAndFlush(buf, promise: nil) }
    }
}

private final class InboundSide: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let targetHost: String
    let targetPort: Int
    let registry: ConnectionRegistry
    let delay: NIOLockedValueBox<TimeAmount>
    let received: NIOLockedValueBox<Int>
    var outbound: Channel?
    var pending: [ByteBuffer] = []

    init(targetHost: String, targetPort: Int, registry: ConnectionRegistry, delay: NIOLockedValueBox<TimeAmount>,
         received: NIOLockedValueBox<Int>) {
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.registry = registry
        self.delay = delay
        self.received = received
    }

    func channelActive(context: ChannelHandlerContext) {
        let inbound = context.channel
        registry.add(inbound)
        let delay = self.delay
        ClientBootstrap(group: context.eventLoop)
            .channelInitializer { out in out.pipeline.addHandler(OutboundSide(peer: inbound, delay: delay)) }
            .connect(host: targetHost, port: targetPort)
            .whenComplete { result in
                switch result {
                case .success(let out):
                    self.registry.add(out)
                    self.outbound = out
                    for b in self.pending { forward(b, to: out, on: inbound.eventLoop, delay: delay) }
                    self.pending = []
                case .failure:
                    inbound.close(promise: nil)
                }
            }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buf = unwrapInboundIn(data)
        received.withLockedValue { $0 += buf.readableBytes }
        if let out = outbound { forward(buf, to: out, on: context.eventLoop, delay: delay) } else { pending.append(buf) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        outbound?.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

private final class OutboundSide: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let peer: Channel
    let delay: NIOLockedValueBox<TimeAmount>

    init(peer: Channel, delay: NIOLockedValueBox<TimeAmount>) {
        self.peer = peer
        self.delay = delay
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        forward(unwrapInboundIn(data), to: peer, on: context.eventLoop, delay: delay)
    }

    func channelInactive(context: ChannelHandlerContext) {
        peer.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
