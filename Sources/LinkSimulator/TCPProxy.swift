import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP proxy standing in for a WAN link: forwards every connection to a target through a
/// ``LinkModel`` per direction (latency, jitter, bandwidth shared by all its connections, loss as
/// connection cuts), and can cut every open connection at once (as a flaky WAN link would).
/// `meridian up --wan-*` puts one in front of every remote broker a mirror reads; tests and
/// `meridian bench mirror` use it too.
public final class TCPProxy: @unchecked Sendable {
    public let port: Int
    private let server: Channel
    private let registry = ConnectionRegistry()
    private let delay: LinkDirections
    private let received = NIOLockedValueBox<Int>(0)

    public init(targetHost: String, targetPort: Int, link: LinkModel.Settings = .init(), bindHost: String = "127.0.0.1",
                group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        let registry = self.registry
        let delay = LinkDirections(link)
        self.delay = delay
        let received = self.received
        server = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { inbound in
                inbound.pipeline.addHandler(InboundSide(targetHost: targetHost, targetPort: targetPort, registry: registry, delay: delay,
                                                        received: received))
            }
            .bind(host: bindHost, port: 0).wait()
        port = server.localAddress!.port!
    }

    /// Adds `amount` of latency to every forwarded chunk in both directions.
    public func setDelay(_ amount: TimeAmount) {
        var s = delay.settings
        s.latencyNanos = amount.nanoseconds
        delay.set(s)
    }

    /// Changes the link's properties (both directions) for what is sent from now on.
    public func setLink(_ settings: LinkModel.Settings) { delay.set(settings) }

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

/// The two directions of a proxy's link, each shared by all its connections.
final class LinkDirections: @unchecked Sendable {
    private let lock = NIOLock()
    private var up: LinkModel
    private var down: LinkModel
    init(_ s: LinkModel.Settings) {
        up = LinkModel(s, seed: 0x1234_5678_9ABC_DEF1)
        down = LinkModel(s, seed: 0x0FED_CBA9_8765_4321)
    }
    var settings: LinkModel.Settings { lock.withLock { up.settings } }
    func set(_ s: LinkModel.Settings) {
        lock.withLock {
            up.settings = s
            down.settings = s
        }
    }
    /// The fate of a chunk sent upstream (client → target) or downstream, and the wire's backlog.
    func send(upstream: Bool, bytes: Int, now: Int64) -> (LinkModel.Fate, backlog: Int64, transparent: Bool) {
        lock.withLock {
            if upstream {
                return (up.settings.isTransparent ? .deliver(at: now) : up.send(bytes: bytes, now: now), up.backlogNanos(now: now), up.settings.isTransparent)
            }
            return (down.settings.isTransparent ? .deliver(at: now) : down.send(bytes: bytes, now: now), down.backlogNanos(now: now), down.settings.isTransparent)
        }
    }
}

/// Writes `buf` to `peer` when the link delivers it; stops reading `from` while the link's wire is
/// booked far ahead (so a slow link holds back the sender instead of buffering without bound);
/// closes both on a cut.
private func forward(_ buf: ByteBuffer, to peer: Channel, from: Channel, upstream: Bool, link: LinkDirections) {
    let now = Int64(NIODeadline.now().uptimeNanoseconds)
    let (fate, backlog, transparent) = link.send(upstream: upstream, bytes: buf.readableBytes, now: now)
    switch fate {
    case .cut:
        from.close(promise: nil)
        peer.close(promise: nil)
    case .deliver(let at):
        if transparent || at <= now {
            peer.writeAndFlush(buf, promise: nil)
        } else {
            from.eventLoop.scheduleTask(deadline: .uptimeNanoseconds(UInt64(at))) { peer.writeAndFlush(buf, promise: nil) }
        }
        if backlog > 50_000_000 {
            from.setOption(ChannelOptions.autoRead, value: false).whenSuccess {
                from.eventLoop.scheduleTask(in: .nanoseconds(backlog - 25_000_000)) {
                    from.setOption(ChannelOptions.autoRead, value: true).whenSuccess { from.read() }
                }
            }
        }
    }
}

private final class InboundSide: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let targetHost: String
    let targetPort: Int
    let registry: ConnectionRegistry
    let delay: LinkDirections
    let received: NIOLockedValueBox<Int>
    var outbound: Channel?
    var pending: [ByteBuffer] = []

    init(targetHost: String, targetPort: Int, registry: ConnectionRegistry, delay: LinkDirections,
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
                    for b in self.pending { forward(b, to: out, from: inbound, upstream: true, link: delay) }
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
        if let out = outbound { forward(buf, to: out, from: context.channel, upstream: true, link: delay) } else { pending.append(buf) }
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
    let delay: LinkDirections

    init(peer: Channel, delay: LinkDirections) {
        self.peer = peer
        self.delay = delay
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        forward(unwrapInboundIn(data), to: peer, from: context.channel, upstream: false, link: delay)
    }

    func channelInactive(context: ChannelHandlerContext) {
        peer.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
