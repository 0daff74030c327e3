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
    private var connectionsPerAddress: [String: Int] = [:]
    private var housekeeping: RepeatedTask?
    /// Bytes of requests being received or queued, all connections together.
    public let requestMemory: RequestMemoryPool

    public init(broker: Broker, group: EventLoopGroup, onReady: @escaping @Sendable ([ListenerAddress]) -> Void = { _ in }) {
        self.broker = broker
        self.group = group
        self.onReady = onReady
        requestMemory = RequestMemoryPool(capacity: max(broker.config.queuedMaxRequestBytes, broker.config.maxRequestBytes))
    }

    /// Client connections open now.
    public var connectionCount: Int { lock.withLock { clientChannels.count } }

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
            let pool = requestMemory
            let perConnection = broker.config.maxBufferedBytesPerConnection
            let idle = broker.config.connectionsMaxIdleMs
            let bootstrap = ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.socketOption(.so_keepalive), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16 * 1024, maximum: 1024 * 1024))
                .childChannelOption(.writeBufferWaterMark, value: .init(low: perConnection / 2, high: perConnection))
                .childChannelInitializer { [weak self] channel in
                    guard let self, self.admit(channel) else {
                        return channel.close()
                    }
                    return channel.eventLoop.makeCompletedFuture {
                        let gate = ReadGate(channel: channel)
                        try channel.pipeline.syncOperations.addHandler(
                            IdleStateHandler(allTimeout: .milliseconds(idle)))
                        if let sslContext {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                        }
                        try channel.pipeline.syncOperations.addHandler(
                            KafkaRequestFrameHandler(maximumFrameSize: maxFrame, pool: pool, gate: gate))
                        try channel.pipeline.syncOperations.addHandler(
                            BrokerConnectionHandler(broker: broker, listenerIndex: index, isTLS: sslContext != nil,
                                                    pool: pool, gate: gate))
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

    /// Counts a new connection in, or refuses it (closed at once, logged) when `max.connections`
    /// or `max.connections.per.ip` is reached.
    private func admit(_ channel: Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let address = channel.remoteAddress?.ipAddress ?? "?"
        let refusal: String? = lock.withLock {
            if clientChannels.count >= broker.config.maxConnections {
                return "max.connections (\(broker.config.maxConnections)) reached"
            }
            if connectionsPerAddress[address, default: 0] >= broker.config.maxConnectionsPerIP {
                return "max.connections.per.ip (\(broker.config.maxConnectionsPerIP)) reached for \(address)"
            }
            clientChannels[id] = channel
            connectionsPerAddress[address, default: 0] += 1
            return nil
        }
        if let refusal {
            broker.logger.warning("refusing a connection", metadata: ["reason": "\(refusal)", "client": "\(address)"])
            return false
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.lock.withLock {
                guard let self else { return }
                self.clientChannels.removeValue(forKey: id)
                let left = self.connectionsPerAddress[address, default: 1] - 1
                self.connectionsPerAddress[address] = left > 0 ? left : nil
            }
        }
        return true
    }

    private func startHousekeeping() -> RepeatedTask {
        let interval = max(100, min(broker.config.retentionCheckIntervalMs, broker.config.groups.offsetsRetentionCheckIntervalMs, broker.config.logCleanerBackoffMs, 1000))
        let retentionEvery = broker.config.retentionCheckIntervalMs
        let broker = self.broker
        let lastRetention = NIOLockedValueBox(currentTimeMillis())
        let lastOffsetExpiry = NIOLockedValueBox(currentTimeMillis())
        let offsetExpiryEvery = broker.config.groups.offsetsRetentionCheckIntervalMs
        let lastClean = NIOLockedValueBox(currentTimeMillis())
        let lastCheckpoint = NIOLockedValueBox(currentTimeMillis())
        let cleanEvery = broker.config.logCleanerBackoffMs
        let loop = group.next()
        return loop.scheduleRepeatedAsyncTask(initialDelay: .milliseconds(interval), delay: .milliseconds(interval)) { _ in
            let p = loop.makePromise(of: Void.self)
            // Housekeeping does file I/O: keep it off the event loop.
            Thread.detachNewThreadIfNeeded {
                for log in broker.logs.logsDueForTimeFlush() { broker.flusher.flushInBackground(log) }
                broker.logs.rollAhead()
                let now = currentTimeMillis()
                let checkpointDue = lastCheckpoint.withLockedValue { last -> Bool in
                    if now - last >= 10_000 { last = now; return true }
                    return false
                }
                if checkpointDue {
                    do { try broker.logs.writeRecoveryPoints() } catch {
                        broker.logger.warning("could not write the recovery points", metadata: ["error": "\(error)"])
                    }
                    broker.logs.expireProducers(maxAgeMs: broker.config.producerIDExpirationMs)
                }
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
        // Flushing and closing files waits for the disk: on the storage threads, not the caller's.
        let logs = broker.logs
        do {
            try await broker.storageWork.runIfActive { logs.closeAll() }
        } catch {
            logs.closeAll()
        }
        await broker.flusher.shutdownGracefully()
        try? await broker.storageWork.shutdownGracefully()
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
