import DequeModule
import KafkaProtocol
import KafkaWire
import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// Serves the requests of one client connection, answering in request order.
///
/// Requests are handled as they arrive (so appends happen in arrival order); a handler that must wait
/// (long-poll fetch, fsync for acks=-1) returns a future, and responses to later requests queue
/// behind it. A barrier reply (an append waiting for a segment roll) also holds back the dispatch of
/// later requests, which wait in arrival order.
///
/// Memory per connection is bounded: reading stops while `maxInFlightPerConnection` responses are
/// pending, while the requests held (in flight or waiting behind a barrier) exceed the per-connection
/// byte bound, or while unsent responses exceed it (the channel is unwritable) — a client that
/// pipelines fetches and never reads costs at most that. Each frame arrives holding a reservation
/// of the broker-wide ``RequestMemoryPool``, released once its request is answered.
///
/// A request that cannot be decoded closes the connection, as Kafka does. So do a connection idle
/// for `connections.max.idle.ms` with nothing pending, and a TLS handshake that does not finish in time.
final class BrokerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = IOData

    private enum Slot {
        case pending
        case ready(KafkaWriter)
    }

    private let broker: Broker
    private let listenerIndex: Int
    private let isTLS: Bool
    private let pool: RequestMemoryPool
    private let gate: ReadGate
    private var logger: Logger
    private var slots = Deque<(id: UInt64, slot: Slot)>()
    private var nextSlotID: UInt64 = 0
    /// Bytes of requests received and not yet answered (each holds a pool reservation).
    private var heldBytes = 0
    /// Frames that arrived while a barrier was pending, in order.
    private var waiting = Deque<ByteBuffer>()
    private var barrierPending = false
    private var closing = false
    private var removed = false
    private var remote = "?"
    private var handshakeTimer: Scheduled<Void>?

    init(broker: Broker, listenerIndex: Int, isTLS: Bool, pool: RequestMemoryPool, gate: ReadGate) {
        self.broker = broker
        self.listenerIndex = listenerIndex
        self.isTLS = isTLS
        self.pool = pool
        self.gate = gate
        self.logger = broker.logger
    }

    func channelActive(context: ChannelHandlerContext) {
        remote = context.remoteAddress.map { "\($0)" } ?? "?"
        logger[metadataKey: "client"] = "\(remote)"
        logger.debug("connection opened")
        broker.stats.connectionsOpen.wrappingIncrement(ordering: .relaxed)
        broker.stats.connectionsAccepted.wrappingIncrement(ordering: .relaxed)
        if isTLS {
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            handshakeTimer = context.eventLoop.scheduleTask(in: .milliseconds(broker.config.tlsHandshakeTimeoutMs)) {
                let (handler, ctx) = loopBound.value
                handler.logger.info("closing connection: the TLS handshake did not finish in time",
                                    metadata: ["timeout_ms": "\(handler.broker.config.tlsHandshakeTimeoutMs)"])
                handler.closing = true
                ctx.close(promise: nil)
            }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        logger.debug("connection closed")
        broker.stats.connectionsOpen.wrappingDecrement(ordering: .relaxed)
        handshakeTimer?.cancel()
        dropPendingRegions()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // Whatever is still held goes back to the pool: the requests will never be answered here
        // (responses still being computed release nothing more when they complete).
        waiting.removeAll()
        pool.release(heldBytes)
        heldBytes = 0
        removed = true
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            handshakeTimer?.cancel()
            handshakeTimer = nil
        } else if event is IdleStateHandler.IdleStateEvent {
            if slots.isEmpty && !barrierPending && waiting.isEmpty {
                logger.debug("closing idle connection", metadata: ["idle_ms": "\(broker.config.connectionsMaxIdleMs)"])
                closing = true
                context.close(promise: nil)
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { gate.open(.unwritable) } else { gate.close(.unwritable) }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        heldBytes += frame.readableBytes
        guard !closing else { return }
        if barrierPending {
            waiting.append(frame)
            updateGate()
            return
        }
        dispatch(context, frame)
        updateGate()
    }

    private func dispatch(_ context: ChannelHandlerContext, _ frameIn: ByteBuffer) {
        var frame = frameIn
        let size = frameIn.readableBytes
        let header: RequestHeader
        do {
            header = try RequestHeader(from: &frame) { key, version in
                Broker.requestHeaderVersion(key, version)
            }
        } catch {
            return closeForBadRequest(context, "unreadable request header: \(error)")
        }
        broker.stats.request(header.apiKey, bytes: size + 4)
        var requestLogger = self.logger
        requestLogger[metadataKey: "api"] = "\(header.apiKey.name)"
        requestLogger[metadataKey: "version"] = "\(header.apiVersion)"
        requestLogger[metadataKey: "client_id"] = "\(header.clientID ?? "")"
        let logger = requestLogger

        guard let range = Broker.apisByKey[header.apiKey]?.versions else {
            return closeForBadRequest(context, "request for unknown or unsupported API key \(header.apiKey.rawValue)")
        }
        if !range.contains(header.apiVersion) && header.apiKey != .apiVersions {
            return closeForBadRequest(context, "\(header.apiKey.name) v\(header.apiVersion) is outside the supported range \(range)")
        }
        let ctx = RequestContext(header: header, eventLoop: context.eventLoop, listenerIndex: listenerIndex,
                                 isTLS: isTLS, remoteAddress: remote)
        let reply: Reply
        do {
            reply = try broker.dispatch(ctx, body: &frame)
        } catch {
            return closeForBadRequest(context, "malformed \(header.apiKey.name) v\(header.apiVersion) request: \(error)")
        }
        // ApiVersions above our maximum is answered in the v0 format.
        let responseVersion = header.apiKey == .apiVersions && header.apiVersion > 4 ? 0 : header.apiVersion
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        switch reply {
        case .noResponse:
            release(size)
        case .close(let why):
            closeForBadRequest(context, why)
        case .response(let body):
            release(size)
            enqueue(context, encode(body, correlationID: header.correlationID, version: responseVersion, logger: logger))
        case .deferred(let future):
            let id = addSlot()
            future.whenComplete { result in
                let (handler, ctx) = loopBound.value
                handler.release(size)
                switch result {
                case .success(let body):
                    let w = handler.encode(body, correlationID: header.correlationID, version: responseVersion, logger: logger)
                    handler.complete(ctx, slotID: id, writer: w)
                case .failure(let error):
                    logger.error("request failed", metadata: ["error": "\(error)"])
                    handler.closeForBadRequest(ctx, "internal error: \(error)")
                }
            }
        case .barrier(let future):
            barrierPending = true
            future.whenComplete { result in
                let (handler, ctx) = loopBound.value
                handler.release(size)
                switch result {
                case .success(let body?):
                    handler.enqueue(ctx, handler.encode(body, correlationID: header.correlationID, version: responseVersion, logger: logger))
                case .success(nil):
                    break
                case .failure(let error):
                    logger.error("request failed", metadata: ["error": "\(error)"])
                    handler.closeForBadRequest(ctx, "internal error: \(error)")
                }
                handler.barrierPending = false
                handler.drainWaiting(ctx)
            }
        }
    }

    /// Dispatches the requests that waited behind a barrier, until the next barrier.
    private func drainWaiting(_ context: ChannelHandlerContext) {
        while !barrierPending, !closing, let frame = waiting.popFirst() {
            dispatch(context, frame)
        }
        context.flush()
        updateGate()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let e = error as? KafkaFrameError {
            logger.warning("closing connection: \(e)")
        } else if "\(error)".contains("Connection reset") || "\(error)".contains("EOF") {
            logger.debug("connection error", metadata: ["error": "\(error)"])
        } else {
            logger.info("closing connection after an error", metadata: ["error": "\(error)"])
        }
        closing = true
        context.close(promise: nil)
    }

    // MARK: - Bounds

    private func release(_ bytes: Int) {
        guard !removed else { return }
        heldBytes -= bytes
        pool.release(bytes)
    }

    private func updateGate() {
        let over = slots.count >= broker.config.maxInFlightPerConnection || heldBytes > broker.config.maxBufferedBytesPerConnection
        let under = slots.count < max(1, broker.config.maxInFlightPerConnection / 2)
            && heldBytes <= broker.config.maxBufferedBytesPerConnection / 2
        if over { gate.close(.inFlight) } else if under { gate.open(.inFlight) }
    }

    // MARK: - Ordering

    private func addSlot() -> UInt64 {
        let id = nextSlotID
        nextSlotID += 1
        slots.append((id, .pending))
        return id
    }

    private func enqueue(_ context: ChannelHandlerContext, _ writer: KafkaWriter) {
        if slots.isEmpty {
            write(context, writer)
        } else {
            let id = addSlot()
            slots[slots.count - 1].slot = .ready(writer)
            _ = id
        }
    }

    private func complete(_ context: ChannelHandlerContext, slotID: UInt64, writer: KafkaWriter) {
        guard let i = slots.firstIndex(where: { $0.id == slotID }) else {
            Self.closeRegions(writer)
            return
        }
        slots[i].slot = .ready(writer)
        var wrote = false
        while let head = slots.first, case .ready(let w) = head.slot {
            slots.removeFirst()
            write(context, w)
            wrote = true
        }
        if wrote { context.flush() }
        updateGate()
    }

    // MARK: - Encoding and writing

    private func encode(_ body: any KafkaResponseMessage, correlationID: Int32, version: Int16, logger: Logger) -> KafkaWriter {
        var w = KafkaWriter(capacity: 512)
        let sizeAt = KafkaFrame.begin(&w)
        let headerVersion = type(of: body).responseHeaderVersion(version)
        ResponseHeader(correlationID: correlationID).encode(to: &w, headerVersion: headerVersion)
        do {
            try body.encode(to: &w, version: version)
        } catch {
            // A response we built cannot be encoded: a bug. Answer nothing rather than garbage.
            logger.error("cannot encode response", metadata: ["error": "\(error)"])
            Self.closeRegions(w)
            var empty = KafkaWriter()
            let at = KafkaFrame.begin(&empty)
            ResponseHeader(correlationID: correlationID).encode(to: &empty, headerVersion: headerVersion)
            KafkaFrame.finish(&empty, sizeAt: at)
            return empty
        }
        KafkaFrame.finish(&w, sizeAt: sizeAt)
        broker.stats.response(body, bytes: w.buffer.readableBytes + w.fileSplices.reduce(0) { $0 + $1.region.readableBytes })
        return w
    }

    /// Writes buffer bytes and spliced file regions in order; file handles close once written.
    private func write(_ context: ChannelHandlerContext, _ w: KafkaWriter) {
        if w.fileSplices.isEmpty {
            context.write(wrapOutboundOut(.byteBuffer(w.buffer)), promise: nil)
            return
        }
        var cursor = w.buffer.readerIndex
        for splice in w.fileSplices {
            if splice.offset > cursor {
                context.write(wrapOutboundOut(.byteBuffer(w.buffer.getSlice(at: cursor, length: splice.offset - cursor)!)), promise: nil)
            }
            let handle = splice.region.fileHandle
            let p = context.eventLoop.makePromise(of: Void.self)
            p.futureResult.whenComplete { _ in try? handle.close() }
            context.write(wrapOutboundOut(.fileRegion(splice.region)), promise: p)
            cursor = splice.offset
        }
        if cursor < w.buffer.writerIndex {
            context.write(wrapOutboundOut(.byteBuffer(w.buffer.getSlice(at: cursor, length: w.buffer.writerIndex - cursor)!)), promise: nil)
        }
    }

    static func closeRegions(_ w: KafkaWriter) {
        for s in w.fileSplices { try? s.region.fileHandle.close() }
    }

    private func dropPendingRegions() {
        for (_, slot) in slots {
            if case .ready(let w) = slot { Self.closeRegions(w) }
        }
        slots.removeAll()
    }

    private func closeForBadRequest(_ context: ChannelHandlerContext, _ why: String) {
        guard !closing else { return }
        logger.warning("closing connection: \(why)")
        closing = true
        context.flush()
        context.close(promise: nil)
    }
}
