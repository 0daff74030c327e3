import Foundation
import KafkaProtocol
import Mirror
import Testing
import Topology

@Suite("Remote naming and flow validation", .timeLimit(.minutes(1)))
struct NamingAndTopologyTests {
    let regions: Set<String> = ["us-east", "eu-west", "ap-south"]

    @Test func prefixNamingNeverSendsATopicBackToARegionInItsPrefixChain() {
        let n = RemoteNaming(naming: .prefix, sourceRegion: "us-east", targetRegion: "eu-west", regions: regions)
        #expect(n.remoteName(for: "orders") == "us-east.orders")
        #expect(n.remoteName(for: "eu-west.orders") == nil, "came from the target")
        #expect(n.remoteName(for: "ap-south.eu-west.orders") == nil, "passed through the target")
        #expect(n.remoteName(for: "ap-south.orders") == "us-east.ap-south.orders")
        #expect(n.remoteName(for: "unknown.orders") == "us-east.unknown.orders", "a dot alone is not a region")
        #expect(n.remoteName(for: "heartbeats") == "us-east.heartbeats")
        for name in ["__consumer_offsets", "meridian.offset-map.internal", "mm2-offset-syncs.eu-west.internal", "ap-south.heartbeats",
                     "us-east.checkpoints.internal"] {
            #expect(n.remoteName(for: TopicName(name)) == nil, "\(name) is internal")
        }
        let id = RemoteNaming(naming: .identity, sourceRegion: "us-east", targetRegion: "eu-west", regions: regions)
        #expect(id.remoteName(for: "orders") == "orders")
        #expect(id.remoteName(for: "heartbeats") == "us-east.heartbeats", "heartbeats keep their link apart with identity naming too")
    }

    @Test func filtersMatchWholeNames() throws {
        let f = try NameFilter(.init(include: ["orders.*", "payments"], exclude: [".*\\.internal"]))
        #expect(f.matches("orders"))
        #expect(f.matches("orders.eu"))
        #expect(!f.matches("orders.internal"))
        #expect(f.matches("payments"))
        #expect(!f.matches("payments-v2"), "anchored: a prefix is not a match")
        #expect(!f.matches("old-orders"))
    }

    func topology(_ flows: String) throws -> Topology {
        let json = """
            {"version": 1, "regions": [
              {"name": "us-east", "brokers": [{"id": 1, "listeners": ["PLAINTEXT://127.0.0.1:19092"], "dataDir": "a"}]},
              {"name": "eu-west", "brokers": [{"id": 1, "listeners": ["PLAINTEXT://127.0.0.1:19093"], "dataDir": "b"}]},
              {"name": "ap-south", "bootstrap": ["kafka.example.com:9092"]}
            ], "flows": \(flows)}
            """
        return try JSONDecoder().decode(Topology.self, from: Data(json.utf8))
    }

    @Test func flowsAreReadWithDefaultsAndValidated() throws {
        let t = try topology(#"[{"name": "us-to-eu", "source": "us-east", "target": "eu-west", "topics": {"include": ["orders.*"]}}]"#)
        #expect(t.validate() == [])
        let f = try #require(t.flow("us-to-eu"))
        #expect(f.naming == .prefix && !f.tls && f.groups.include == [".*"] && f.topics.exclude == [])
        #expect(t.region("ap-south")?.bootstrap == ["kafka.example.com:9092"])
    }

    @Test func badFlowsAreExplained() throws {
        let t = try topology("""
            [{"name": "a", "source": "us-east", "target": "nowhere"},
             {"name": "b", "source": "us-east", "target": "us-east"},
             {"name": "c", "source": "us-east", "target": "eu-west", "topics": {"include": ["("]}},
             {"name": "d", "source": "us-east", "target": "eu-west"},
             {"name": "e", "source": "eu-west", "target": "us-east", "tls": true}]
            """)
        let problems = t.validate().joined(separator: "\n")
        #expect(problems.contains("target region 'nowhere' is not defined"))
        #expect(problems.contains("source and target are both 'us-east'"))
        #expect(problems.contains("'(' is not a valid regular expression"))
        #expect(problems.contains("already copies us-east into eu-west"))
        #expect(problems.contains("region 'eu-west' has no SSL listener"))
    }

    @Test func theMirrorWritesToItsOwnRegionOverTLSWhenThatIsAllItOffers() throws {
        let dir = NSTemporaryDirectory() + "meridian-target-tls-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["ca.pem", "mirror-eu-west.pem", "mirror-eu-west.key"] {
            _ = FileManager.default.createFile(atPath: "\(dir)/\(f)", contents: Data("x".utf8))
        }
        let json = """
            {"version": 1, "regions": [
              {"name": "us-east", "brokers": [{"id": 1, "listeners": ["PLAINTEXT://127.0.0.1:19092", "SSL://127.0.0.1:19192"], "dataDir": "a"}],
               "tls": {"ca": "ca.pem"}},
              {"name": "eu-west", "brokers": [{"id": 1, "listeners": ["SSL://127.0.0.1:19193"], "dataDir": "b",
                                               "tls": {"cert": "eu.pem", "key": "eu.key"}}], "tls": {"ca": "ca.pem"}},
              {"name": "ap-south", "bootstrap": ["kafka.example.com:9093"], "tls": {"ca": "ca.pem"}},
              {"name": "sa-east", "bootstrap": ["kafka.example.com:9092"]}
            ], "flows": []}
            """
        let t = try JSONDecoder().decode(Topology.self, from: Data(json.utf8))
        let eu = try RegionEndpoint.resolveTarget(t, region: "eu-west", base: dir)
        #expect(eu.addresses.map(\.port) == [19193], "SSL listeners only: the mirror uses them")
        #expect(eu.tls?.caPath == "\(dir)/ca.pem")
        #expect(eu.tls?.certificatePath == "\(dir)/mirror-eu-west.pem", "with the certificate make-certs.sh makes for this region's mirror")
        let us = try RegionEndpoint.resolveTarget(t, region: "us-east", base: dir)
        #expect(us.addresses.map(\.port) == [19092] && us.tls == nil, "a PLAINTEXT listener is preferred inside the region")
        let ap = try RegionEndpoint.resolveTarget(t, region: "ap-south", base: dir)
        #expect(ap.tls?.caPath == "\(dir)/ca.pem" && ap.tls?.certificatePath == nil, "a bootstrap cluster with a CA is reached over TLS")
        #expect(try RegionEndpoint.resolveTarget(t, region: "sa-east", base: dir).tls == nil)
    }

    @Test func cyclesThatMixNamingsAreRejectedAndUniformOnesAccepted() throws {
        let mixed = try topology("""
            [{"name": "us-eu", "source": "us-east", "target": "eu-west", "naming": "identity"},
             {"name": "eu-us", "source": "eu-west", "target": "us-east", "naming": "prefix"}]
            """)
        #expect(mixed.validate().contains { $0.contains("form a cycle that mixes prefix and identity naming") })
        for naming in ["prefix", "identity"] {
            let uniform = try topology("""
                [{"name": "us-eu", "source": "us-east", "target": "eu-west", "naming": "\(naming)"},
                 {"name": "eu-us", "source": "eu-west", "target": "us-east", "naming": "\(naming)"},
                 {"name": "us-ap", "source": "us-east", "target": "ap-south", "naming": "\(naming)"}]
                """)
            #expect(uniform.validate() == [], "active-active with \(naming) naming stops loops by itself")
        }
    }
}
