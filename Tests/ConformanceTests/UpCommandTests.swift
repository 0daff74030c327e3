import Foundation
import Testing
import TestSupport

/// `meridian up` on a two-region topology: brokers start, serve clients, and stop on SIGTERM.
@Suite("meridian up", .timeLimit(.minutes(5)))
struct UpCommandTests {
    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func startsEveryRegionAndStopsThemOnSigterm() async throws {
        let kcat = try ExternalTools.require(ExternalTools.kcat, "kcat")
        let dir = NSTemporaryDirectory() + "meridian-up-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let topology = """
            {"version": 1, "regions": [
              {"name": "alpha", "tls": {"ca": "certs/ca.pem"},
               "brokers": [{"id": 1, "listeners": ["PLAINTEXT://127.0.0.1:0", "SSL://127.0.0.1:0"], "dataDir": "data/alpha",
                            "tls": {"cert": "certs/alpha-1.pem", "key": "certs/alpha-1.key"}}]},
              {"name": "beta", "defaults": {"partitions": 4},
               "brokers": [{"id": 7, "listeners": ["PLAINTEXT://127.0.0.1:0"], "dataDir": "data/beta"}]}
            ]}
            """
        try topology.write(toFile: dir + "/topology.json", atomically: true, encoding: .utf8)
        let out = dir + "/up.out"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        let up = Process()
        up.executableURL = URL(fileURLWithPath: BrokerProcess.binary)
        up.arguments = ["up", "--topology", dir + "/topology.json",
                        "--make-certs", ExternalTools.packageRoot.appendingPathComponent("deploy/make-certs.sh").path]
        up.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        up.standardError = up.standardOutput
        try up.run()
        defer { if up.isRunning { kill(up.processIdentifier, SIGKILL) } }
        var text = ""
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline && !text.contains("ready; press Ctrl-C") && up.isRunning {
            try await Task.sleep(for: .microseconds(50_000))
            text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        }
        #expect(text.contains("all 2 broker(s) ready"), "up output:\n\(text)")
        #expect(FileManager.default.fileExists(atPath: dir + "/certs/alpha-1.pem"), "missing certificates were created")
        func address(_ name: String, _ proto: String) -> String? {
            guard let line = text.split(separator: "\n").first(where: { $0.contains("\(name): ready") }) else { return nil }
            let l = line.split(separator: " ").first { $0.contains(proto + "://") } ?? ""
            return l.split(separator: ",").first { $0.hasPrefix(proto + "://") }
                .map { String($0.dropFirst(proto.count + 3)) }
        }
        let alpha = try #require(address("alpha-broker-1", "PLAINTEXT"))
        let alphaSSL = try #require(address("alpha-broker-1", "SSL"))
        let beta = try #require(address("beta-broker-7", "PLAINTEXT"))
        let md = try await runProcess(kcat, ["-b", beta, "-L"])
        #expect(md.stdout.contains("broker 7 at \(beta)"))
        #expect(try await runProcess(kcat, ["-b", beta, "-P", "-t", "in-beta"], input: Data("x\n".utf8)).status == 0)
        #expect(try await runProcess(kcat, ["-b", beta, "-L", "-t", "in-beta"]).stdout.contains("with 4 partitions"), "region defaults apply")
        let ssl = try await runProcess(kcat, ["-b", alphaSSL, "-X", "security.protocol=ssl", "-X", "ssl.ca.location=\(dir)/certs/ca.pem", "-L"])
        #expect(ssl.status == 0 && ssl.stdout.contains("broker 1 at \(alphaSSL)"), "\(ssl.stderr)")
        #expect(try await runProcess(kcat, ["-b", alpha, "-L"]).status == 0)

        kill(up.processIdentifier, SIGTERM)
        let stopBy = Date().addingTimeInterval(60)
        while up.isRunning && Date() < stopBy { try await Task.sleep(for: .microseconds(50_000)) }
        #expect(!up.isRunning)
        #expect(up.terminationStatus == 0)
        text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(text.contains("alpha-broker-1: exited with status 0") && text.contains("beta-broker-7: exited with status 0"))
        let log = (try? String(contentsOfFile: dir + "/logs/beta-broker-7.log", encoding: .utf8)) ?? ""
        #expect(log.contains("all logs flushed and closed"))
        #expect(FileManager.default.fileExists(atPath: dir + "/data/beta/in-beta-0/.clean-shutdown"))
    }

    @Test func invalidTopologyIsExplained() async throws {
        let dir = NSTemporaryDirectory() + "meridian-badtopo-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            {"version": 1, "regions": [{"name": "r", "brokers": [
              {"id": 1, "listeners": ["PLAINTEXT://127.0.0.1:9500"], "dataDir": "d"},
              {"id": 1, "listeners": ["PLAINTEXT://127.0.0.1:9500", "SSL://127.0.0.1:9501"], "dataDir": "d"}]}]}
            """.write(toFile: dir + "/t.json", atomically: true, encoding: .utf8)
        let r = try await runProcess(BrokerProcess.binary, ["topology", "check", "--topology", dir + "/t.json"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("broker id 1 is used twice"))
        #expect(r.stderr.contains("clashes with"))
        #expect(r.stderr.contains("needs tls.cert and tls.key"))
        #expect(r.stderr.contains("dataDir 'd' is also used"))
        try "{ not json".write(toFile: dir + "/t.json", atomically: true, encoding: .utf8)
        let bad = try await runProcess(BrokerProcess.binary, ["up", "--topology", dir + "/t.json"])
        #expect(bad.status != 0 && bad.stderr.contains("not valid JSON"))
    }
}
