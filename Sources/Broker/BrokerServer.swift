import KafkaProtocol
import KafkaWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// Runs a ``Broker``'s listeners and housekeeping as a `Service`.
///
/// `run()` binds every listener, reports them through `onReady` (with real ports when 0 was
/// asked for), then serves until graceful shutdown: it stops accepting, closes client connections,
/// flushes and closes every log, and returns.
public final class BrokerServer: Service, @unchecked Sendable {
    public let broker: Broker
    private let group: EventLoopGroup
    private let onReady: @Sendable ([ListenerAddress]) -> Void
    private let lock = NIOLock()
    private var serverChannels: [Channel] = []
    private var clientChannels: [ObjectIdentifier: Channel] = [:]
    private var housekeeping: RepeatedTask?

    public init(broker: Broker, group: EventLoopGroup, onReady: @escaping @Sendable ([ListenerAddress]) -> Void = { _ in }) {
        self.broker = broker
        self.group = group
        self.onReady = onReady
    }

    public func run() async throws {
        let bound = try await start()
        onReady(bound)
        await withGracefulShutdownHandler {
            // Wait until shutdown is requested.
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                try? await Task.sleep(for: .milliseconds(100))
            }
        } onGracefulShutdown: {}
        await stop()
    }

    /// Binds all listeners; returns their actual addresses.
    public func start() async throws -> [ListenerAddress] {
        var bound: [ListenerAddress] = []
        for (index, listener) in broker.config.listeners.enumerated() {
            let sslContext: NIOSSLContext?
            if listener.securityProtocol == .ssl {
                guard let tls = broker.config.tls else {
                    throw TLSSettings.TLSSetupError.incomplete(
                        "listener \(listener) is SSL but no certificate was given; pass --tls-cert and --tls-key")
                }
                sslContext = try NIOSSLContext(configuration: try tls.serverConfiguration())
            } else {
                sslContext = nil
            }
            let maxFrame = broker.config.maxRequestBytes
            let broker = self.broker
            let bootstrap = ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.socketOption(.so_keepalive), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 64 * 1024, maximum: 1024 * 1024))
                .childChannelInitializer { [weak self] channel in
                    self?.track(channel)
                    return channel.eventLoop.makeCompletedFuture {
                        if let sslContext {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                        }
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(KafkaFrameDecoder(maximumFrameSize: maxFrame, minimumFrameSize: 8)))
                        try channel.pipeline.syncOperations.addHandler(
                            BrokerConnectionHandler(broker: broker, listenerIndex: index, isTLS: sslContext != nil))
                    }
                }
            let channel: Channel
            do {
                channel = try await bootstrap.bind(host: listener.host, port: listener.port).get()
            } catch {
                throw BrokerStartError.bindFailed(listener, "\(error)")
            }
            lock.withLock { serverChannels.append(channel) }
            let port = channel.localAddress?.port ?? listener.port
            bound.append(ListenerAddress(securityProtocol: listener.securityProtocol, host: listener.host, port: port))
        }
        // Advertise the bound ports unless explicit advertised listeners were given.
        if broker.config.advertisedListeners == nil {
            broker.advertisedListeners = bound.map { l in
                var a = l
                if a.host == "0.0.0.0" || a.host == "::" { a.host = "127.0.0.1" }
                return a
            }
        }
        let task = startHousekeeping()
        lock.withLock { housekeeping = task }
        broker.logger.info("broker is serving", metadata: [
            "listeners": "\(bound.map(\.description).joined(separator: ","))",
            "data_dir": "\(broker.config.dataDirectory)", "cluster_id": "\(broker.clusterID)",
        ])
        return bound
    }

    private func track(_ channel: Channel) {
        let id = ObjectIdentifier(channel)
        lock.withLock { clientChannels[id] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.lock.withLock { _ = self?.clientChannels.removeValue(forKey: id) }
        }
    }

    private func startHousekeeping() -> RepeatedTask {
        let interval = max(100, min(broker.config.retentionCheckIntervalMs, broker.config.groups.offsetsRetentionCheckIntervalMs, broker.config.logCleanerBackoffMs, 1000))
        let retentionEvery = broker.config.retentionCheckIntervalMs
        let broker = self.broker
        let lastRetention = NIOLockedValueBox(currentTimeMillis())
        let lastOffsetExpiry = NIOLockedValueBox(currentTimeMillis())
        let offsetExpiryEvery = broker.config.groups.offsetsRetentionCheckIntervalMs
        let lastClean = NIOLockedValueBox(currentTimeMillis())
        let cleanEvery = broker.config.logCleanerBackoffMs
        let loop = group.next()
        return loop.scheduleRepeatedAsyncTask(initialDelay: .milliseconds(interval), delay: .milliseconds(interval)) { _ in
            let p = loop.makePromise(of: Void.self)
            // Housekeeping does file I/O: keep it off the event loop.
            Thread.detachNewThreadIfNeeded {
                for log in broker.logs.logsDueForTimeFlush() { broker.flusher.flushInBackground(log) }
                let now = currentTimeMillis()
                let due = lastRetention.withLockedValue { last -> Bool in
                    if now - last >= retentionEvery { last = now; return true }
                    return false
                }
                if due { broker.logs.enforceRetention() }
                let expiryDue = lastOffsetExpiry.withLockedValue { last -> Bool in
                    if now - last >= offsetExpiryEvery { last = now; return true }
                    return false
                }
                if expiryDue { broker.groups.expireOffsets() }
                let cleanDue = lastClean.withLockedValue { last -> Bool in
                    if now - last >= cleanEvery { last = now; return true }
                    return false
                }
                if cleanDue { broker.logs.compactLogs() }
                p.succeed()
            }
            return p.futureResult
        }
    }

    /// Stops accepting, closes connections, flushes and closes every log.
    public func stop() async {
        let (servers, clients, task) = lock.withLock { (serverChannels, Array(clientChannels.values), housekeeping) }
        if let task {
            let done = group.next().makePromise(of: Void.self)
            task.cancel(promise: done)
            try? await done.futureResult.get()
        }
        for c in servers { try? await c.close() }
        for c in clients { try? await c.close() }
        broker.logs.closeAll()
        broker.flusher.shutdown()
        broker.logger.info("broker stopped; all logs flushed and closed")
    }
}

public enum BrokerStartError: Error, CustomStringConvertible {
    case bindFailed(ListenerAddress, String)

    public var description: String {
        switch self {
        case .bindFailed(let l, let why):
            return "cannot listen on \(l): \(why); is another broker using the port?"
        }
    }
}

import Foundation

extension Thread {
    /// Runs `body` on a short-lived background thread.
    static func detachNewThreadIfNeeded(_ body: @escaping @Sendable () -> Void) {
        Thread.detachNewThread(body)
    }
}
