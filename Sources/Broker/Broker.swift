import ClusterMetadata
import Foundation
import KafkaProtocol
import KafkaWire
import Logging
import LogStorage
import NIOConcurrencyHelpers
import NIOCore

/// The state shared by all connections of one broker: configuration, logs, flusher, ids.
///
/// Handlers are extensions of this type (one file per API under `Handlers/`); they run on the
/// connection's event loop and touch shared state only through the thread-safe ``LogManager``,
/// ``LogFlusher`` and ``ProducerIDManager``.
public final class Broker: @unchecked Sendable {
    public let config: BrokerConfig
    public let logs: LogManager
    public let flusher: LogFlusher
    public let producerIDs: ProducerIDManager
    public let clusterID: String
    public let logger: Logger
    public let stats = BrokerStats()
    private let lock = NIOLock()
    private var _advertised: [ListenerAddress]

    public init(config: BrokerConfig, logger: Logger) throws {
        self.config = config
        var l = logger
        l[metadataKey: "broker"] = "\(config.brokerID)"
        self.logger = l
        let store = try EmbeddedMetadataStore(directory: config.dataDirectory, brokerID: config.brokerID)
        clusterID = try store.clusterID()
        logs = try LogManager(dataDirectory: config.dataDirectory, store: store,
                              brokerDefaults: config.topicConfigDefaults, logger: l)
        flusher = LogFlusher(logger: l)
        producerIDs = ProducerIDManager(store: store)
        _advertised = config.advertisedListeners ?? config.listeners
    }

    /// Advertised endpoints, one per listener; set after binding so port 0 becomes the real port.
    public var advertisedListeners: [ListenerAddress] {
        get { lock.withLock { _advertised } }
        set { lock.withLock { _advertised = newValue } }
    }

    public var brokerID: BrokerID { BrokerID(config.brokerID) }

    /// Serves one decoded request header and its body bytes.
    func dispatch(_ context: RequestContext, body: inout ByteBuffer) throws -> Reply {
        let v = context.version
        switch context.header.apiKey {
        case .apiVersions:
            return handleApiVersions(context, body: &body)
        case .produce:
            if v < 3 { return .response(produceTooOld(try ProduceRequest(from: &body, version: v))) }
            return handleProduce(try ProduceRequest(from: &body, version: v), context)
        case .fetch:
            return handleFetch(try FetchRequest(from: &body, version: v), context)
        case .listOffsets:
            return handleListOffsets(try ListOffsetsRequest(from: &body, version: v), context)
        case .metadata:
            return handleMetadata(try MetadataRequest(from: &body, version: v), context)
        case .createTopics:
            return handleCreateTopics(try CreateTopicsRequest(from: &body, version: v), context)
        case .deleteTopics:
            return handleDeleteTopics(try DeleteTopicsRequest(from: &body, version: v), context)
        case .createPartitions:
            return handleCreatePartitions(try CreatePartitionsRequest(from: &body, version: v), context)
        case .describeConfigs:
            return handleDescribeConfigs(try DescribeConfigsRequest(from: &body, version: v), context)
        case .alterConfigs:
            return handleAlterConfigs(try AlterConfigsRequest(from: &body, version: v), context)
        case .incrementalAlterConfigs:
            return handleIncrementalAlterConfigs(try IncrementalAlterConfigsRequest(from: &body, version: v), context)
        case .initProducerID:
            return handleInitProducerID(try InitProducerIDRequest(from: &body, version: v), context)
        case .deleteRecords:
            return handleDeleteRecords(try DeleteRecordsRequest(from: &body, version: v), context)
        case .describeCluster:
            return handleDescribeCluster(try DescribeClusterRequest(from: &body, version: v), context)
        default:
            return .close("API \(context.header.apiKey) is not supported")
        }
    }
}
