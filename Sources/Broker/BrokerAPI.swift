import KafkaProtocol
import NIOCore

/// One API the broker serves: its key, the versions it advertises and how a request is served.
///
/// Each handler file declares its own `BrokerAPI` next to the handler (see `Handlers/`); the
/// registry ``Broker/apis`` lists them once, and the dispatch table, the ApiVersions answer and the
/// request-header version of every request are all derived from that list. The first flexible
/// version comes from the generated request type, so it cannot disagree with the codec.
public struct BrokerAPI: Sendable {
    public let key: ApiKey
    /// The versions ApiVersions advertises; a request outside them closes the connection
    /// (except ApiVersions itself, which answers UNSUPPORTED_VERSION in the v0 format).
    public let versions: ClosedRange<Int16>
    /// From the generated codec: requests at or above it use request header v2.
    public let firstFlexibleVersion: Int16?
    let serve: @Sendable (Broker, RequestContext, inout ByteBuffer) throws -> Reply

    /// An API whose request body is decoded with the generated type `R`, then handed to `handle`.
    init<R: KafkaRequestMessage>(_ type: R.Type, versions: ClosedRange<Int16>,
                                 _ handle: @escaping @Sendable (Broker, R, RequestContext) -> Reply) {
        key = R.apiKey
        self.versions = versions
        firstFlexibleVersion = R.firstFlexibleVersion
        serve = { broker, ctx, body in handle(broker, try R(from: &body, version: ctx.version), ctx) }
    }

    /// An API that reads its request body itself (ApiVersions answers requests above its range).
    init<R: KafkaRequestMessage>(_ type: R.Type, versions: ClosedRange<Int16>,
                                 rawBody handle: @escaping @Sendable (Broker, RequestContext, inout ByteBuffer) -> Reply) {
        key = R.apiKey
        self.versions = versions
        firstFlexibleVersion = R.firstFlexibleVersion
        serve = { broker, ctx, body in handle(broker, ctx, &body) }
    }

    /// Request header version for `version` of this API: v2 from the first flexible version, else v1.
    public func requestHeaderVersion(_ version: Int16) -> Int16 {
        guard let first = firstFlexibleVersion, version >= first else { return 1 }
        return 2
    }
}

extension Broker {
    /// Every API this broker serves, in the order ApiVersions lists them. Adding an API: write its
    /// handler file with its `BrokerAPI`, and name it here.
    public static let apis: [BrokerAPI] = [
        .produce, .fetch, .listOffsets, .metadata, .apiVersions, .createTopics, .deleteTopics,
        .deleteRecords, .initProducerID, .describeConfigs, .alterConfigs, .createPartitions,
        .incrementalAlterConfigs, .describeCluster, .findCoordinator, .joinGroup, .syncGroup,
        .heartbeat, .leaveGroup, .offsetCommit, .offsetFetch, .listGroups, .describeGroups,
        .deleteGroups, .offsetDelete, .offsetForLeaderEpoch,
    ]

    /// ``apis`` by key, for dispatch.
    static let apisByKey: [ApiKey: BrokerAPI] = Dictionary(uniqueKeysWithValues: apis.map { ($0.key, $0) })

    /// Request header version of a request: v2 for flexible versions of served APIs, else v1.
    static func requestHeaderVersion(_ key: ApiKey, _ version: Int16) -> Int16 {
        apisByKey[key]?.requestHeaderVersion(version) ?? 1
    }

    /// Serves one decoded request header and its body bytes.
    func dispatch(_ context: RequestContext, body: inout ByteBuffer) throws -> Reply {
        guard let api = Self.apisByKey[context.header.apiKey] else {
            return .close("API \(context.header.apiKey) is not supported")
        }
        return try api.serve(self, context, &body)
    }
}
