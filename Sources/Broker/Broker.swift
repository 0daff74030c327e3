import ClusterMetadata
import FileLayer
import Foundation
import KafkaProtocol
import KafkaWire
import Logging
import LogStorage
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The state shared by all connections of one broker: configuration, logs, flusher, ids.
///
/// Handlers are extensions of this type (one file per API under `Handlers/`); they run on the
/// connection's event loop and touch shared state only through the thread-safe ``LogManager``,
/// ``LogFlusher`` and ``ProducerIDManager``. Anything that creates, renames or syncs files (topic
/// changes, segment rolls, record deletion) goes to ``offload(_:on:_:)``: event loops never wait
/// for the disk.
public final class Broker: @unchecked Sendable {
    public let config: BrokerConfig
    public let logs: LogManager
    public let flusher: LogFlusher
    public let producerIDs: ProducerIDManager
    public let groups: GroupCoordinator
    public let clusterID: String
    public let logger: Logger
    public let stats = BrokerStats()
    /// Threads for file work the event loops must not do.
    let storageWork: NIOThreadPool
    private let lock = NIOLock()
    private var _advertised: [ListenerAddress]

    /// - Parameter eventLoopGroup: where the group coordinator runs its timers.
    public init(config: BrokerConfig, logger: Logger, eventLoopGroup: EventLoopGroup, fs: any FileSystem = PosixFileSystem()) throws {
        self.config = config
        var l = logger
        l[metadataKey: "broker"] = "\(config.brokerID)"
        self.logger = l
        let store = try EmbeddedMetadataStore(fs: fs, directory: config.dataDirectory, brokerID: config.brokerID)
        clusterID = try store.clusterID()
        flusher = LogFlusher(logger: l)
        logs = try LogManager(fs: fs, dataDirectory: config.dataDirectory, store: store, flusher: flusher,
                              brokerDefaults: config.topicConfigDefaults, durableHighWatermark: config.fsyncOnAcksAll, logger: l)
        producerIDs = ProducerIDManager(store: store, maxTracked: config.producerIDExpirationTracking)
        storageWork = NIOThreadPool(numberOfThreads: 2)
        storageWork.start()
        groups = try GroupCoordinator(logs: logs, settings: config.groups,
                                      timerLoop: eventLoopGroup.next(), logger: l)
        _advertised = config.advertisedListeners ?? config.listeners
    }

    /// Advertised endpoints, one per listener; set after binding so port 0 becomes the real port.
    public var advertisedListeners: [ListenerAddress] {
        get { lock.withLock { _advertised } }
        set { lock.withLock { _advertised = newValue } }
    }

    public var brokerID: BrokerID { BrokerID(config.brokerID) }

    /// Runs file work on the storage threads and completes on `loop`.
    func offload<T: Sendable>(_ what: String, on loop: EventLoop, _ body: @escaping @Sendable () throws -> T) -> EventLoopFuture<T> {
        storageWork.runIfActive(eventLoop: loop, body)
    }

}
