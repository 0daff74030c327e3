import KafkaProtocol
import NIOCore

// ApiVersions (key 18), versions 0–4.
// - The response header is always v0 (no tagged fields), even for flexible v3+ bodies.
// - A request above v4 is answered with a v0-shaped body carrying UNSUPPORTED_VERSION and our
//   ApiVersions range, which librdkafka and kafka-python use to retry at a version we support.
// - The request body is not needed (v3+ only carries the client's software name and version).

extension Broker {
    /// What this broker advertises, by API. Ranges follow ../shared/kafka-protocol/COMPAT.md.
    /// Produce is advertised from 0 so librdkafka 2.0.2 enables compression; v0–2 are then refused.
    static let advertisedVersions: [(ApiKey, ClosedRange<Int16>)] = [
        (.produce, 0...11),
        (.fetch, 4...12),
        (.listOffsets, 1...7),
        (.metadata, 0...12),
        (.apiVersions, 0...4),
        (.createTopics, 2...7),
        (.deleteTopics, 1...5),
        (.deleteRecords, 0...2),
        (.initProducerID, 0...4),
        (.describeConfigs, 0...4),
        (.alterConfigs, 0...2),
        (.createPartitions, 0...3),
        (.incrementalAlterConfigs, 0...1),
        (.describeCluster, 0...1),
        (.findCoordinator, 0...4),
        (.joinGroup, 0...7),
        (.syncGroup, 0...5),
        (.heartbeat, 0...4),
        (.leaveGroup, 0...4),
        (.offsetCommit, 2...8),
        (.offsetFetch, 1...7),
        (.listGroups, 0...4),
        (.describeGroups, 0...5),
        (.deleteGroups, 0...2),
        (.offsetDelete, 0...0),
        (.offsetForLeaderEpoch, 2...4),
    ]

    static let advertisedByKey: [Int16: ClosedRange<Int16>] = Dictionary(
        uniqueKeysWithValues: advertisedVersions.map { ($0.0.rawValue, $0.1) })

    func handleApiVersions(_ context: RequestContext, body: inout ByteBuffer) -> Reply {
        var resp = ApiVersionsResponse()
        resp.apiKeys = Self.advertisedVersions.map {
            .init(apiKey: $0.0.rawValue, minVersion: $0.1.lowerBound, maxVersion: $0.1.upperBound)
        }
        if context.version > 4 {
            resp.errorCode = ErrorCode.unsupportedVersion.rawValue
            resp.apiKeys = resp.apiKeys.filter { $0.apiKey == ApiKey.apiVersions.rawValue }
        }
        return .response(resp)
    }
}
