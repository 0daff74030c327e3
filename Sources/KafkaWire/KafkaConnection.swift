#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KafkaProtocol
import NIOCore
import NIOPosix
import NIOSSL

/// A client connection to one Kafka broker, with pipelined requests.
///
/// After ``connect(host:port:tls:group:clientID:)`` the connection has negotiated API versions with
/// the broker (ApiVersions, falling back to v0 when the broker rejects our version). Requests may be
/// sent from any thread; they are encoded on the caller's thread and written in call order.
public final class KafkaConnection: Sendable {
    public let channel: Channel
    public let host: String
    public let port: Int
    public let clientID: String
    /// Version ranges the broker advertised, by API key.
    public let brokerVersions: [Int16: ClosedRange<Int16>]
    public let requestTimeout: TimeAmount

    private init(channel: Channel, host: String, port: Int, clientID: String, brokerVersions: [Int16: ClosedRange<Int16>],
                 requestTimeout: TimeAmount) {
        self.channel = channel
        self.host = host
        self.port = port
        self.clientID = clientID
        self.brokerVersions = brokerVersions
        self.requestTimeout = requestTimeout
    }

    public var eventLoop: EventLoop { channel.eventLoop }

    /// Opens a TCP (or TLS) connection and negotiates API versions.
    /// Connects to the broker at `host:port` — through `via` (a tunnel, NAT or simulated WAN link)
    /// when given; TLS still names and verifies `host`.
    public static func connect(host: String, port: Int, via: (host: String, port: Int)? = nil, tls: TLSSettings? = nil, group: EventLoopGroup,
                               clientID: String = "meridian", requestTimeout: TimeAmount = .seconds(30),
                               connectTimeout: TimeAmount = .seconds(10)) async throws -> KafkaConnection {
        let sslContext = try tls.map { try NIOSSLContext(configuration: try $0.clientConfiguration()) }
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        // SNI carries host names only, never address literals.
                        let serverName = Self.isIPAddress(host) ? nil : host
                        let h = try NIOSSLClientHandler(context: sslContext, serverHostname: serverName)
                        try channel.pipeline.syncOperations.addHandler(h)
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(KafkaFrameDecoder(minimumFrameSize: 4)))
                    try channel.pipeline.syncOperations.addHandler(KafkaClientHandler())
                }
            }
        let channel: Channel
        do {
            let (h, p) = (via?.host ?? host, via?.port ?? port)
            // An address literal needs no lookup: NIO would still run getaddrinfo for it on a
            // Dispatch queue, which a busy process can make wait.
            if Self.isIPAddress(h), let address = try? SocketAddress(ipAddress: h, port: p) {
                channel = try await bootstrap.connect(to: address).get()
            } else {
                channel = try await bootstrap.connect(host: h, port: p).get()
            }
        } catch {
            let through = via.map { " (through \($0.host):\($0.port))" } ?? ""
            throw KafkaConnectionError.connectFailed(host: host, port: port, reason: Self.reason(error, connectTimeout: connectTimeout) + through)
        }
        do {
            // Setting up the connection (TLS handshake, ApiVersions) is bounded by the connect
            // timeout, as the TCP handshake is: a listener that accepts and never answers is a
            // broker that cannot be reached, reported as soon as one would be.
            let versions = try await negotiate(channel: channel, clientID: clientID, timeout: connectTimeout)
            return KafkaConnection(channel: channel, host: host, port: port, clientID: clientID,
                                   brokerVersions: versions, requestTimeout: requestTimeout)
        } catch KafkaConnectionError.timedOut {
            try? await channel.close()
            throw KafkaConnectionError.connectFailed(
                host: host, port: port,
                reason: "connected, but no answer to ApiVersions within \(connectTimeout.nanoseconds / 1_000_000) ms (is it a Kafka listener, with TLS on both sides or neither?)")
        } catch let error as KafkaConnectionError {
            try? await channel.close()
            throw error
        } catch {
            try? await channel.close()
            throw KafkaConnectionError.transport("negotiating API versions with \(host):\(port): \(error)")
        }
    }

    private static func negotiate(channel: Channel, clientID: String, timeout: TimeAmount) async throws -> [Int16: ClosedRange<Int16>] {
        var version = ApiVersionsRequest.validVersions.upperBound
        while true {
            var req = ApiVersionsRequest()
            if version >= 3 {
                req.clientSoftwareName = "meridian"
                req.clientSoftwareVersion = "0.1.0"
            }
            let frame = try encodeFrame(req, version: version, clientID: clientID)
            let payload = try await write(to: channel, frame: frame, deadline: .now() + timeout).get()
            // ApiVersions responses always use header v0.
            let code = ErrorCode(rawValue: payload.getInteger(at: payload.readerIndex, endianness: .big, as: Int16.self) ?? 0)
            if code == .unsupportedVersion {
                guard version > 0 else { throw KafkaConnectionError.noCommonVersion(ApiKey.apiVersions) }
                version = fallbackVersion(after: payload, asked: version)
                continue
            }
            var body = payload
            let resp = try ApiVersionsResponse(from: &body, version: version)
            guard resp.errorCode == .none else {
                throw KafkaConnectionError.apiVersionsRefused(resp.errorCode)
            }
            var out: [Int16: ClosedRange<Int16>] = [:]
            for k in resp.apiKeys where k.minVersion <= k.maxVersion { out[k.apiKey] = k.minVersion...k.maxVersion }
            return out
        }
    }

    /// The ApiVersions version to ask next after UNSUPPORTED_VERSION for `asked`. Servers answer in
    /// different shapes: Apache Kafka with a v0 body, librdkafka's mock cluster in the flexible shape
    /// of the version asked, others with no usable body. As librdkafka and the Java client do, the
    /// body is only a hint: the server's highest ApiVersions version when a body in either shape
    /// names one below `asked`, else v0.
    static func fallbackVersion(after payload: ByteBuffer, asked: Int16) -> Int16 {
        for shape in [Int16(0), asked] {
            var body = payload
            if let resp = try? ApiVersionsResponse(from: &body, version: shape),
               let max = resp.apiKeys.first(where: { $0.apiKey == ApiKey.apiVersions.rawValue })?.maxVersion,
               (0..<asked).contains(max) {
                return max
            }
        }
        return 0
    }

    /// Encodes a complete request frame (correlation id left 0; the handler assigns it).
    public static func encodeFrame<R: KafkaRequestMessage>(_ request: R, version: Int16, clientID: String) throws -> ByteBuffer {
        var w = KafkaWriter(capacity: 256)
        let sizeAt = KafkaFrame.begin(&w)
        RequestHeader(apiKey: R.apiKey, apiVersion: version, correlationID: 0, clientID: clientID)
            .encode(to: &w, headerVersion: R.requestHeaderVersion(version))
        try request.encode(to: &w, version: version)
        KafkaFrame.finish(&w, sizeAt: sizeAt)
        return w.buffer
    }

    /// Highest version of `R` both sides support, capped at `max`.
    public func version<R: KafkaRequestMessage>(for _: R.Type, max ourMax: Int16? = nil) throws -> Int16 {
        let ours = R.validVersions
        guard let theirs = brokerVersions[R.apiKey.rawValue] else { throw KafkaConnectionError.noCommonVersion(R.apiKey) }
        let hi = min(theirs.upperBound, ours.upperBound, ourMax ?? Int16.max)
        let lo = Swift.max(theirs.lowerBound, ours.lowerBound)
        guard lo <= hi else { throw KafkaConnectionError.noCommonVersion(R.apiKey) }
        return hi
    }

    /// Sends a request and decodes its response. `timeout` overrides the connection's request
    /// timeout (JoinGroup may legitimately wait for a whole rebalance).
    public func send<R: KafkaRequestMessage>(_ request: R, version: Int16? = nil, timeout: TimeAmount? = nil) -> EventLoopFuture<R.Response> {
        let v: Int16
        let frame: ByteBuffer
        do {
            v = try version ?? self.version(for: R.self)
            frame = try Self.encodeFrame(request, version: v, clientID: clientID)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return send(encoded: frame, R.self, version: v, timeout: timeout)
    }

    /// Sends a frame made by ``encodeFrame(_:version:clientID:)`` (and perhaps changed in place
    /// since, without another copy) and decodes its response.
    public func send<R: KafkaRequestMessage>(encoded frame: ByteBuffer, _: R.Type, version v: Int16, timeout: TimeAmount? = nil) -> EventLoopFuture<R.Response> {
        sendFrame(frame, timeout: timeout).flatMapThrowing { payload in
            var p = payload
            if R.Response.responseHeaderVersion(v) >= 1 {
                // Header v1: tagged fields follow the correlation id (already consumed).
                _ = try p.readTaggedFields()
            }
            return try R.Response(from: &p, version: v)
        }
    }

    public func send<R: KafkaRequestMessage>(_ request: R, version: Int16? = nil, timeout: TimeAmount? = nil) async throws -> R.Response {
        try await send(request, version: version, timeout: timeout).get()
    }

    /// Sends a pre-encoded frame and returns the payload after the correlation id.
    public func sendFrame(_ frame: ByteBuffer, timeout: TimeAmount? = nil) -> EventLoopFuture<ByteBuffer> {
        Self.write(to: channel, frame: frame, deadline: .now() + (timeout ?? requestTimeout))
    }

    /// Writes a request and returns its response future. The write's own promise fails the
    /// response promise too: a request written after the pipeline was torn down (the connection
    /// closed between a caller's `isActive` check and the write) never reaches the handler that
    /// would answer or fail it, and its caller would otherwise wait forever.
    private static func write(to channel: Channel, frame: ByteBuffer, deadline: NIODeadline) -> EventLoopFuture<ByteBuffer> {
        let response = channel.eventLoop.makePromise(of: ByteBuffer.self)
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { error in
            response.fail(error is ChannelError ? KafkaConnectionError.connectionClosed : error)
        }
        channel.writeAndFlush(OutboundKafkaRequest(frame: frame, promise: response, deadline: deadline), promise: written)
        return response.futureResult
    }

    /// Sends a frame for which the broker sends no response (Produce with acks=0).
    public func sendFrameWithoutResponse(_ frame: ByteBuffer) -> EventLoopFuture<Void> {
        let p = channel.eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(OutboundKafkaRequest(frame: frame, promise: nil, deadline: .now() + requestTimeout), promise: p)
        return p.futureResult
    }

    public func close() async {
        try? await channel.close()
    }

    /// What a person should read for a failed connect: the operating system's words for the
    /// socket error ("Connection refused"), not NIO's nested description of every address tried.
    static func reason(_ error: Error, connectTimeout: TimeAmount) -> String {
        func plain(_ e: Error) -> String? {
            if let io = e as? IOError { return String(cString: strerror(io.errnoCode)) }
            if let c = e as? ChannelError, case .connectTimeout = c {
                return "no answer within \(connectTimeout.nanoseconds / 1_000_000) ms (socket.connection.setup.timeout.ms)"
            }
            return nil
        }
        if let p = plain(error) { return p }
        if let n = error as? NIOConnectionError {
            if let first = n.connectionErrors.first, let p = plain(first.error) { return p }
            if let e = n.dnsAAAAError ?? n.dnsAError { return "cannot resolve \(n.host): \(e)" }
        }
        return "\(error)"
    }

    /// Whether `host` is an IPv4 or IPv6 address literal (as `inet_pton` reads them).
    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}
