import Broker
import KafkaProtocol
import KafkaWire
import Testing
import TestSupport

/// One list of APIs: what ApiVersions advertises, what is dispatched and which request header each
/// version uses all come from `Broker.apis`.
@Suite("API registry", .timeLimit(.minutes(1)))
struct APIRegistryTests {
    @Test func apiVersionsAdvertisesExactlyTheRegisteredAPIs() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        let resp = try await conn.send(ApiVersionsRequest(), version: 3)
        let advertised = Dictionary(uniqueKeysWithValues: resp.apiKeys.map { ($0.apiKey, $0.minVersion...$0.maxVersion) })
        let registered = Dictionary(uniqueKeysWithValues: Broker.apis.map { ($0.key.rawValue, $0.versions) })
        #expect(advertised == registered)
        #expect(Set(Broker.apis.map(\.key)).count == Broker.apis.count, "each API is registered once")
        await conn.close()
        await b.stop()
    }

    @Test func requestHeaderVersionsFollowTheGeneratedFirstFlexibleVersion() {
        for api in Broker.apis {
            #expect(api.versions.lowerBound >= 0)
            for v in api.versions {
                let flexible = api.firstFlexibleVersion.map { v >= $0 } ?? false
                #expect(api.requestHeaderVersion(v) == (flexible ? 2 : 1), "\(api.key) v\(v)")
            }
        }
        #expect(Broker.apis.first { $0.key == .fetch }?.firstFlexibleVersion == FetchRequest.firstFlexibleVersion)
        #expect(Broker.apis.first { $0.key == .apiVersions }?.firstFlexibleVersion == 3)
    }
}
