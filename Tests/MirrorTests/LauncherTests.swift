import Foundation
import Launcher
import Testing
import Topology

@Suite("meridian up's plan and restarts", .timeLimit(.minutes(1)))
struct LauncherTests {
    @Test func restartsBackOffWhileAChildKeepsDyingAndForgiveAHealthyRun() {
        var p = RestartPolicy()
        p.started(at: 0)
        #expect(p.exited(at: 500) == 1_000)
        p.started(at: 1_500)
        #expect(p.exited(at: 2_000) == 2_000)
        p.started(at: 4_000)
        #expect(p.exited(at: 4_100) == 4_000)
        for _ in 0..<10 {
            p.started(at: 10_000)
            _ = p.exited(at: 10_001)
        }
        #expect(p.exited(at: 10_002) == 30_000, "capped at 30 s")
        p.started(at: 100_000)
        #expect(p.exited(at: 170_000) == 1_000, "a minute of running counts as healthy")
    }

    @Test func thePlanStartsBrokersOfTheSelectedRegionsAndAMirrorWhereFlowsArrive() throws {
        let json = """
            {"version": 1, "regions": [
              {"name": "us-east", "brokers": [{"id": 1, "listeners": ["PLAINTEXT://127.0.0.1:9092", "SSL://127.0.0.1:9093"], "dataDir": "us"}],
               "tls": {"ca": "certs/ca.pem", "cert": "certs/b.pem", "key": "certs/b.key"}},
              {"name": "eu-west", "mirrorMetrics": "127.0.0.1:9644", "brokers": [{"id": 1, "listeners": ["PLAINTEXT://127.0.0.1:9192"], "dataDir": "eu"}]},
              {"name": "ap-south", "brokers": [{"id": 1, "listeners": ["PLAINTEXT://127.0.0.1:9292"], "dataDir": "ap"}]}],
             "flows": [{"name": "us-to-eu", "source": "us-east", "target": "eu-west", "tls": true},
                       {"name": "ap-to-eu", "source": "ap-south", "target": "eu-west"},
                       {"name": "eu-to-ap", "source": "eu-west", "target": "ap-south"}]}
            """
        let topo = try JSONDecoder().decode(Topology.self, from: Data(json.utf8))
        let dir = NSTemporaryDirectory() + "plan-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/certs", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = FileManager.default.createFile(atPath: dir + "/certs/ca.pem", contents: Data())
        let all = try UpPlan(topology: topo, topologyPath: dir + "/topology.json", only: [], logLevel: "info")
        #expect(all.brokers.map(\.name) == ["us-east-broker-1", "eu-west-broker-1", "ap-south-broker-1"])
        #expect(all.mirrors.map(\.name) == ["eu-west-mirror", "ap-south-mirror"], "no flow arrives in us-east: no mirror there")
        let eu = try #require(all.mirrors.first)
        #expect(eu.remoteBrokers == ["127.0.0.1:9093", "127.0.0.1:9292"], "a TLS flow reads the SSL listener")
        #expect(eu.metrics == "127.0.0.1:9644" && all.mirrors[1].metrics == "127.0.0.1:0")
        #expect(eu.arguments == ["mirror", "--topology", dir + "/topology.json", "--region", "eu-west", "--metrics", "127.0.0.1:9644", "--log-level", "info"])
        let one = try UpPlan(topology: topo, topologyPath: dir + "/topology.json", only: ["ap-south"], logLevel: "debug")
        #expect(one.children.map(\.name) == ["ap-south-broker-1", "ap-south-mirror"])
        #expect(throws: (any Error).self) { try UpPlan(topology: topo, topologyPath: "/t.json", only: ["mars"], logLevel: "info") }
    }
}
