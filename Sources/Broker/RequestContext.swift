import KafkaProtocol
import NIOCore

/// What a handler knows about the request it serves besides the body.
public struct RequestContext: Sendable {
    public var header: RequestHeader
    public var eventLoop: EventLoop
    /// Index into the broker's listeners of the listener the client connected to.
    public var listenerIndex: Int
    /// The connection is TLS: file regions cannot be written, record bytes must be read into memory.
    public var isTLS: Bool
    public var remoteAddress: String

    public var version: Int16 { header.apiVersion }
}

/// A handler's answer.
public enum Reply: Sendable {
    /// Encode and send this response now (in request order).
    case response(any KafkaResponseMessage)
    /// The response comes later (long poll, fsync); later requests' responses wait behind it.
    case deferred(EventLoopFuture<any KafkaResponseMessage>)
    /// The response comes later, and the connection dispatches none of its later requests until
    /// it does (an append that must wait for a segment roll keeps the connection's append order).
    /// nil: send nothing (acks=0).
    case barrier(EventLoopFuture<(any KafkaResponseMessage)?>)
    /// Send nothing (Produce with acks=0).
    case noResponse
    /// Close the connection (a request that cannot be answered in its own format).
    case close(String)
}
