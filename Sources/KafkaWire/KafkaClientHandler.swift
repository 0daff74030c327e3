import DequeModule
import KafkaProtocol
import NIOCore
import NIOSSL

/// One request on its way out of a client connection.
public struct OutboundKafkaRequest: Sendable {
    /// The whole frame (size prefix, header, body); the correlation id at bytes 8..<12 is filled in here.
    public var frame: ByteBuffer
    /// Completed with the response payload after the correlation id; nil for requests with no response.
    public var promise: EventLoopPromise<ByteBuffer>?
    public var deadline: NIODeadline

    public init(frame: ByteBuffer, promise: EventLoopPromise<ByteBuffer>?, deadline: NIODeadline) {
        self.frame = frame
        self.promise = promise
        self.deadline = deadline
    }
}

/// Matches responses to requests on one client connection.
///
/// Kafka answers requests on a connection in the order they were sent, so pending requests form a
/// FIFO; the correlation id (assigned here, on the channel's event loop) is checked against the head.
/// Any mismatch, a timeout of the oldest request, or the connection closing fails every pending
/// request and closes the channel: after that the byte stream cannot be trusted.
final class KafkaClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = OutboundKafkaRequest
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var correlationID: Int32
        var promise: EventLoopPromise<ByteBuffer>
        var deadline: NIODeadline
    }

    private var pending = Deque<Pending>()
    private var nextCorrelationID: Int32 = 1
    private var timeoutTask: RepeatedTask?
    private var failure: Error?

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timeoutTask = context.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(500), delay: .milliseconds(500)) { _ in
            let (handler, ctx) = loopBound.value
            handler.checkTimeouts(context: ctx)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeoutTask?.cancel()
        failAll(KafkaConnectionError.connectionClosed)
    }

    private func checkTimeouts(context: ChannelHandlerContext) {
        if let head = pending.first, head.deadline < .now() {
            failAll(KafkaConnectionError.timedOut(correlationID: head.correlationID))
            context.close(promise: nil)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var req = unwrapOutboundIn(data)
        if let failure {
            req.promise?.fail(failure)
            promise?.fail(failure)
            return
        }
        // The correlation id goes into the frame's first 12 bytes, split off as their own buffer:
        // setting it in the whole frame would copy all of it (the caller still holds the frame).
        var rest = req.frame
        req.frame = ByteBuffer()
        guard var head = rest.readSlice(length: 12) else {
            let error = KafkaConnectionError.transport("a request frame shorter than its header")
            req.promise?.fail(error)
            promise?.fail(error)
            return
        }
        let id = nextCorrelationID
        nextCorrelationID = nextCorrelationID == Int32.max ? 1 : nextCorrelationID + 1
        head.setInteger(id, at: head.readerIndex + 8, endianness: .big)
        if let p = req.promise {
            pending.append(Pending(correlationID: id, promise: p, deadline: req.deadline))
        }
        context.write(wrapOutboundOut(head), promise: nil)
        context.write(wrapOutboundOut(rest), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        guard let id = frame.readInteger(endianness: .big, as: Int32.self), let head = pending.popFirst() else {
            failAll(KafkaConnectionError.unexpectedResponse)
            context.close(promise: nil)
            return
        }
        guard head.correlationID == id else {
            head.promise.fail(KafkaConnectionError.correlationMismatch(expected: head.correlationID, got: id))
            failAll(KafkaConnectionError.correlationMismatch(expected: head.correlationID, got: id))
            context.close(promise: nil)
            return
        }
        head.promise.succeed(frame)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(KafkaConnectionError.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is NIOSSLError || error is BoringSSLError {
            failAll(KafkaConnectionError.tls("\(error)"))
        } else if case KafkaFrameError.invalidFrameSize(let n, _) = error, [0x15, 0x16].contains(n >> 24) {
            // A TLS record (alert or handshake) where a Kafka frame size should be.
            failAll(KafkaConnectionError.tls("the listener speaks TLS but this connection is plaintext"))
        } else {
            failAll(KafkaConnectionError.transport("\(error)"))
        }
        context.close(promise: nil)
    }

    private func failAll(_ error: Error) {
        if failure == nil { failure = error }
        while let p = pending.popFirst() { p.promise.fail(error) }
    }
}

/// Why a connection could not be used, or a request on it did not get its response.
///
/// `isRetriable` is decided by the case: a lost or timed-out connection may succeed on a new one; a
/// failed TLS handshake, or a broker that speaks none of our versions, will fail the same way again.
public enum KafkaConnectionError: Error, Equatable, CustomStringConvertible {
    case connectionClosed
    case timedOut(correlationID: Int32)
    case unexpectedResponse
    case correlationMismatch(expected: Int32, got: Int32)
    case transport(String)
    case connectFailed(host: String, port: Int, reason: String)
    /// The TLS handshake failed: wrong CA, missing or rejected client certificate, name mismatch.
    case tls(String)
    /// The broker supports no version of this API that the client speaks.
    case noCommonVersion(ApiKey)
    /// The broker answered ApiVersions with an error.
    case apiVersionsRefused(ErrorCode)

    public var isRetriable: Bool {
        switch self {
        case .connectionClosed, .timedOut, .unexpectedResponse, .correlationMismatch, .transport, .connectFailed: return true
        case .tls, .noCommonVersion: return false
        case .apiVersionsRefused(let code): return code.isRetriable
        }
    }

    public var description: String {
        switch self {
        case .connectionClosed: return "the connection to the broker closed before the response arrived"
        case .timedOut(let id): return "request \(id) timed out; the connection was closed"
        case .unexpectedResponse: return "the broker sent a response nobody asked for"
        case .correlationMismatch(let e, let g): return "response correlation id \(g) does not match request \(e)"
        case .transport(let why): return "connection error: \(why)"
        case .connectFailed(let h, let p, let why): return "cannot connect to \(h):\(p): \(why)"
        case .tls(let why): return "TLS handshake failed (\(why))"
        case .noCommonVersion(let key): return "the broker supports no version of \(key) that this client speaks"
        case .apiVersionsRefused(let code): return "the broker refused ApiVersions with \(code)"
        }
    }
}
