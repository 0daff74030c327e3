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
    /// A direction of the proxied connections.
    public enum Direction: Sendable {
        /// Client to target (requests).
        case upstream
        /// Target to client (responses).
        case downstream
    }

    public let port: Int
    private let server: Channel
    private let registry = ConnectionRegistry()
    private let delay: LinkDirections
    private let received = NIOLockedValueBox<Int>(0)
    private let held: HeldChunks

    /// `targetHost` is resolved once, here: a connection through the proxy never waits for a name
    /// lookup (NIO runs those on Dispatch's global queue, which a busy test process can starve for
    /// many seconds — a connection that loses every chunk stayed open 29 s that way).
    public init(targetHost: String, targetPort: Int, link: LinkModel.Settings = .init(), bindHost: String = "127.0.0.1",
                group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        let registry = self.registry
        let delay = LinkDirections(link)
        self.delay = delay
        let received = self.received
        let held = HeldChunks()
        self.held = held
        let target = try SocketAddress.makeAddressResolvingHost(targetHost, port: targetPort)
        server = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { inbound in
                inbound.pipeline.addHandler(InboundSide(target: target, registry: registry, delay: delay,
                                                        received: received, held: held))
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
    /// Chunks held back (``hold(_:)``) are lost with their connections.
    public func cutAll() {
        for c in registry.takeAll() { c.close(promise: nil) }
        held.dropAll()
    }

    /// Holds back every chunk in `direction` from now on, on every connection, until ``release()``
    /// or ``cutAll()``: a test makes "a request is in flight" (upstream) or "the broker answered but
    /// the answer has not arrived" (downstream) happen, then cuts at exactly that moment.
    public func hold(_ direction: Direction) { held.hold(direction) }

    /// Delivers what was held back, in order, and stops holding.
    public func release() { held.release() }

    /// Chunks held back so far (and not yet released or cut) in `direction`.
    public func heldChunks(_ direction: Direction) -> Int { held.count(direction) }

    public var openConnections: Int { registry.count / 2 }

    /// Bytes the proxy has received from its clients so far (forwarded, or held by the delay).
    public var bytesFromClients: Int { received.withLockedValue { $0 } }

    public func close() {
        cutAll()
        try? server.close().wait()
    }
}

/// Chunks a test holds back, per direction, and whether it holds them.
final class HeldChunks: @unchecked Sendable {
    private let lock = NIOLock()
    private var holding: Set<TCPProxy.Direction> = []
    private var chunks: [(direction: TCPProxy.Direction, peer: Channel, buffer: ByteBuffer)] = []

    func hold(_ d: TCPProxy.Direction) { lock.withLock { _ = holding.insert(d) } }

    /// Keeps `buffer` for `peer` when `direction` is held; false when it is not (deliver it now).
    func keep(_ buffer: ByteBuffer, for peer: Channel, _ direction: TCPProxy.Direction) -> Bool {
        lock.withLock {
            guard holding.contains(direction) else { return false }
            chunks.append((direction, peer, buffer))
            return true
        }
    }

    func count(_ d: TCPProxy.Direction) -> Int { lock.withLock { chunks.filter { $0.direction == d }.count } }

    func release() {
        let out: [(direction: TCPProxy.Direction, peer: Channel, buffer: ByteBuffer)] = lock.withLock {
            holding = []
            defer { chunks = [] }
            return chunks
        }
        for c in out { c.peer.writeAndFlush(c.buffer, promise: nil) }
    }

    func dropAll() { lock.withLock { chunks = [] } }
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

/// What the link does with a chunk handed to it at `now`: when it arrives (nil: it cuts the
/// connection), and whether the sender should pause while the wire is booked far ahead.
private func admit(_ buf: ByteBuffer, upstream: Bool, link: LinkDirections) -> (arrival: Int64?, backlog: Int64) {
    let now = Int64(NIODeadline.now().uptimeNanoseconds)
    let (fate, backlog, transparent) = link.send(upstream: upstream, bytes: buf.readableBytes, now: now)
    switch fate {
    case .cut: return (nil, backlog)
    case .deliver(let at): return (transparent ? now : at, backlog)
    }
}

/// Writes `buf` to `peer` at `arrival` (or once released, while its direction is held).
private func deliver(_ buf: ByteBuffer, to peer: Channel, at arrival: Int64, upstream: Bool, held: HeldChunks) {
    let write: @Sendable () -> Void = {
        if !held.keep(buf, for: peer, upstream ? .upstream : .downstream) { peer.writeAndFlush(buf, promise: nil) }
    }
    if arrival <= Int64(NIODeadline.now().uptimeNanoseconds) {
        write()
    } else {
        peer.eventLoop.scheduleTask(deadline: .uptimeNanoseconds(UInt64(arrival))) { write() }
    }
}

/// Stops reading `from` while the link's wire is booked far ahead, so a slow link holds back the
/// sender instead of buffering without bound.
private func pace(_ from: Channel, backlog: Int64) {
    guard backlog > 50_000_000 else { return }
    from.setOption(ChannelOptions.autoRead, value: false).whenSuccess {
        from.eventLoop.scheduleTask(in: .nanoseconds(backlog - 25_000_000)) {
            from.setOption(ChannelOptions.autoRead, value: true).whenSuccess { from.read() }
        }
    }
}

private final class InboundSide: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let target: SocketAddress
    let registry: ConnectionRegistry
    let delay: LinkDirections
    let received: NIOLockedValueBox<Int>
    let held: HeldChunks
    var outbound: Channel?
    /// Chunks that arrived before the connection to the target was up, with their arrival times.
    var pending: [(ByteBuffer, Int64)] = []

    init(target: SocketAddress, registry: ConnectionRegistry, delay: LinkDirections, received: NIOLockedValueBox<Int>, held: HeldChunks) {
        self.target = target
        self.registry = registry
        self.delay = delay
        self.received = received
        self.held = held
    }

    func channelActive(context: ChannelHandlerContext) {
        let inbound = context.channel
        registry.add(inbound)
        let delay = self.delay, held = self.held
        ClientBootstrap(group: context.eventLoop)
            .channelInitializer { out in out.pipeline.addHandler(OutboundSide(peer: inbound, delay: delay, held: held)) }
            .connect(to: target)
            .whenComplete { result in
                switch result {
                case .success(let out):
                    self.registry.add(out)
                    guard inbound.isActive else { out.close(promise: nil); return }
                    self.outbound = out
                    for (b, at) in self.pending { deliver(b, to: out, at: at, upstream: true, held: held) }
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
        // The link decides a chunk's fate when it is sent, whether or not the far side is reached yet.
        let (arrival, backlog) = admit(buf, upstream: true, link: delay)
        guard let arrival else {
            context.close(promise: nil)
            outbound?.close(promise: nil)
            return
        }
        if let out = outbound { deliver(buf, to: out, at: arrival, upstream: true, held: held) } else { pending.append((buf, arrival)) }
        pace(context.channel, backlog: backlog)
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
    let held: HeldChunks

    init(peer: Channel, delay: LinkDirections, held: HeldChunks) {
        self.peer = peer
        self.delay = delay
        self.held = held
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buf = unwrapInboundIn(data)
        let (arrival, backlog) = admit(buf, upstream: false, link: delay)
        guard let arrival else {
            context.close(promise: nil)
            peer.close(promise: nil)
            return
        }
        deliver(buf, to: peer, at: arrival, upstream: false, held: held)
        pace(context.channel, backlog: backlog)
    }

    func channelInactive(context: ChannelHandlerContext) {
        peer.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
