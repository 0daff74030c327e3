import KafkaProtocol
import NIOCore

// ApiVersions (key 18), versions 0–4.
// - The response header is always v0 (no tagged fields), even for flexible v3+ bodies.
// - A request above v4 is answered with a v0-shaped body carrying UNSUPPORTED_VERSION and our
//   ApiVersions range, which librdkafka and kafka-python use to retry at a version we support.
// - The request body is not needed (v3+ only carries the client's software name and version).

extension BrokerAPI {
    static let apiVersions = BrokerAPI(ApiVersionsRequest.self, versions: 0...4, rawBody: { $0.handleApiVersions($1, body: &$2) })
}

extension Broker {
    func handleApiVersions(_ context: RequestContext, body: inout ByteBuffer) -> Reply {
        var resp = ApiVersionsResponse()
        resp.apiKeys = Self.apis.map {
            .init(apiKey: $0.key.rawValue, minVersion: $0.versions.lowerBound, maxVersion: $0.versions.upperBound)
        }
        if context.version > 4 {
            resp.errorCode = .unsupportedVersion
            resp.apiKeys = resp.apiKeys.filter { $0.apiKey == ApiKey.apiVersions.rawValue }
        }
        return .response(resp)
    }
}
