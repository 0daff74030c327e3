import NIOCore
import NIOHTTP1
import NIOPosix

/// A small HTTP/1.1 server for GET endpoints (`/metrics`, `/lag`): each path maps to a function
/// that returns the body. Anything else gets 404, other methods 405.
public final class MetricsHTTPServer: Sendable {
    public struct Endpoint: Sendable {
        public var contentType: String
        public var body: @Sendable () throws -> [UInt8]
        public init(contentType: String, body: @escaping @Sendable () throws -> [UInt8]) {
            self.contentType = contentType
            self.body = body
        }
    }

    private let channel: Channel
    public var port: Int { channel.localAddress?.port ?? 0 }

    public init(host: String, port: Int, endpoints: [String: Endpoint], group: EventLoopGroup) async throws {
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(endpoints: endpoints))
                }
            }
            .bind(host: host, port: port).get()
    }

    public func close() async {
        try? await channel.close()
    }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let endpoints: [String: Endpoint]
        var head: HTTPRequestHead?

        init(endpoints: [String: Endpoint]) { self.endpoints = endpoints }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): head = h
            case .body: break
            case .end:
                guard let h = head else { return }
                head = nil
                let path = String(h.uri.split(separator: "?", maxSplits: 1).first ?? "")
                var status = HTTPResponseStatus.ok
                var type = "text/plain; charset=utf-8"
                var body: [UInt8]
                if h.method != .GET && h.method != .HEAD {
                    status = .methodNotAllowed
                    body = Array("only GET\n".utf8)
                } else if let e = endpoints[path] {
                    do {
                        body = try e.body()
                        type = e.contentType
                    } catch {
                        status = .internalServerError
                        body = Array("\(error)\n".utf8)
                    }
                } else {
                    status = .notFound
                    body = Array("no such endpoint; try \(endpoints.keys.sorted().joined(separator: ", "))\n".utf8)
                }
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: type)
                headers.add(name: "Content-Length", value: "\(body.count)")
                let keepAlive = h.isKeepAlive
                if !keepAlive { headers.add(name: "Connection", value: "close") }
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
                if h.method != .HEAD {
                    var buf = context.channel.allocator.buffer(capacity: body.count)
                    buf.writeBytes(body)
                    context.write(wrapOutboundOut(.body(.byteBuffer(buf))), promise: nil)
                }
                if keepAlive {
                    context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                } else {
                    let channel = context.channel
                    context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
                }
            }
        }
    }
}
