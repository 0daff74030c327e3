import Foundation
import Testing
import TestSupport

/// The Swift client through the `meridian` CLI, against broker processes and next to real clients.
@Suite("Swift client and CLI", .timeLimit(.minutes(5)))
struct ClientTests {
    let m = BrokerProcess.binary

    func kcat(_ args: [String], input: String? = nil) async throws -> ProcessResult {
        try await runProcess(try ExternalTools.require(ExternalTools.kcat, "kcat"), args, input: input.map { Data($0.utf8) }, timeout: 60)
    }

    /// key → partition as a consumer sees it (`kcat -f '%k %p'`).
    func placement(_ bootstrap: String, _ topic: String) async throws -> [String: String] {
        let c = try await kcat(["-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k %p\\n"])
        var out: [String: String] = [:]
        for line in c.stdout.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count == 2 { out[String(f[0])] = String(f[1]) }
        }
        return out
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func keysLandWhereOtherClientsPutThem() async throws {
        let broker = try await BrokerProcess(arguments: ["--default-partitions", "7"])
        defer { broker.terminate(); broker.removeData() }
        let keys = (0..<400).map { "customer-\($0 * 7919 % 100_003)" }
        let lines = keys.map { "\($0):x" }.joined(separator: "\n") + "\n"
        for topic in ["k-java", "k-ours-java", "k-crc", "k-ours-crc"] {
            #expect(try await runProcess(m, ["topics", "create", topic, "--partitions", "7", "--bootstrap", broker.bootstrap]).status == 0)
        }
        #expect(try await kcat(["-b", broker.bootstrap, "-P", "-t", "k-java", "-K:", "-X", "partitioner=murmur2_random"], input: lines).status == 0)
        #expect(try await kcat(["-b", broker.bootstrap, "-P", "-t", "k-crc", "-K:"], input: lines).status == 0)
        #expect(try await runProcess(m, ["produce", "k-ours-java", "--key-separator", ":", "--bootstrap", broker.bootstrap],
                               input: Data(lines.utf8)).status == 0)
        #expect(try await runProcess(m, ["produce", "k-ours-crc", "--key-separator", ":", "--partitioner", "consistent_random",
                                   "--bootstrap", broker.bootstrap], input: Data(lines.utf8)).status == 0)
        let java = try await placement(broker.bootstrap, "k-java"), oursJava = try await placement(broker.bootstrap, "k-ours-java")
        let crc = try await placement(broker.bootstrap, "k-crc"), oursCRC = try await placement(broker.bootstrap, "k-ours-crc")
        #expect(java.count == 400 && Set(java.values).count == 7)
        #expect(java == oursJava, "murmur2 placement equals librdkafka's murmur2_random (the Java default)")
        #expect(crc == oursCRC, "CRC32 placement equals librdkafka's default consistent_random")
        #expect(java != crc)
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.python) && ExternalTools.shouldRun(ExternalTools.kcat)))
    func mixedGroupWithConfluentConsumer() async throws {
        let python = try ExternalTools.require(ExternalTools.python, "python venv")
        let broker = try await BrokerProcess(arguments: ["--group-initial-rebalance-delay-ms", "2000", "--default-partitions", "4"])
        defer { broker.terminate(); broker.removeData() }
        let lines = (0..<4_000).map { "k\($0 % 97):v\($0)" }.joined(separator: "\n") + "\n"
        #expect(try await kcat(["-b", broker.bootstrap, "-P", "-t", "mixed", "-K:"], input: lines).status == 0)
        let ckOut = broker.dataDir + ".ck", ourOut = broker.dataDir + ".ours"
        defer { try? FileManager.default.removeItem(atPath: ckOut); try? FileManager.default.removeItem(atPath: ourOut) }
        let script = ExternalTools.packageRoot.appendingPathComponent("Tests/ConformanceTests/python/ck_mixed_member.py").path
        let ck = try SpawnedProcess(python, [script, broker.bootstrap, "mixed", "mixed-group", "12"], stdoutPath: ckOut)
        let ours = try SpawnedProcess(m, ["consume", "mixed", "--group", "mixed-group", "--from", "earliest", "--bootstrap", broker.bootstrap],
                                      stdoutPath: ourOut)
        func read(_ p: String) -> [String] { ((try? String(contentsOfFile: p, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let n = read(ckOut).filter { !$0.hasPrefix("#") }.count + read(ourOut).count
            if n >= 4_000 { break }
            try await Task.sleep(for: .microseconds(200_000))
        }
        try await Task.sleep(for: .microseconds(1_500_000))
        ours.stop()
        ck.stop(SIGKILL)
        let ckValues = read(ckOut).filter { !$0.hasPrefix("#") }, ourValues = read(ourOut)
        #expect(ckValues.count > 0 && ourValues.count > 0, "both members consumed: confluent \(ckValues.count), meridian \(ourValues.count)")
        #expect(Set(ckValues).isDisjoint(with: ourValues), "no record went to both members")
        #expect(Set(ckValues).union(ourValues).count == 4_000, "together they consumed everything")
        let ckAssigned = read(ckOut).filter { $0.hasPrefix("# ") }.last ?? ""
        #expect(ckAssigned.split(separator: ",").count == 2, "range split 2/2 with the Meridian member: \(ckAssigned)")
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func idempotentProduceThroughAFlakyLinkNeitherDuplicatesNorReorders() async throws {
        // The broker advertises the proxy, so every client connection goes through it.
        let port = try freePort()
        let proxy = try TCPProxy(targetHost: "127.0.0.1", targetPort: port)
        defer { proxy.close() }
        let broker = try await BrokerProcess(listeners: ["PLAINTEXT://127.0.0.1:\(port)"],
                                       arguments: ["--advertised-listener", "PLAINTEXT://127.0.0.1:\(proxy.port)", "--default-partitions", "1"])
        defer { broker.terminate(); broker.removeData() }
        proxy.setDelay(.milliseconds(3))
        let total = 40_000
        let input = (0..<total).map(String.init).joined(separator: "\n") + "\n"
        let out = broker.dataDir + ".produce"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let cutter = Thread {
            for _ in 0..<10 {
                usleep(250_000)
                proxy.cutAll()
            }
        }
        cutter.start()
        let r = try await runProcess(m, ["produce", "flaky", "--bootstrap", "127.0.0.1:\(proxy.port)", "--linger-ms", "2"],
                               input: Data(input.utf8), timeout: 120)
        #expect(r.status == 0, "\(r.stderr.suffix(2000))")
        let c = try await kcat(["-b", "127.0.0.1:\(port)", "-C", "-t", "flaky", "-o", "beginning", "-e", "-q"])
        let got = c.stdout.split(separator: "\n").map { Int($0)! }
        #expect(got.count == total, "exactly \(total) records, got \(got.count)")
        #expect(got.elementsEqual(0..<total), "in the order they were sent (first difference at \(Array(zip(got, 0..<total)).firstIndex { $0.0 != $0.1 } ?? -1))")
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.openssl)))
    func tlsWithAndWithoutClientCertificates() async throws {
        let certs = try await makeTestCertificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let broker = try await BrokerProcess(listeners: ["SSL://127.0.0.1:0"], arguments: [
            "--tls-cert", "\(certs)/broker.pem", "--tls-key", "\(certs)/broker.key", "--tls-ca", "\(certs)/ca.pem",
            "--tls-client-auth", "required"])
        defer { broker.terminate(); broker.removeData() }
        let base = ["--bootstrap", broker.bootstrap, "--tls-ca", "\(certs)/ca.pem"]
        let noCert = try await runProcess(m, ["topics", "list"] + base, timeout: 60)
        #expect(noCert.status != 0, "a client without a certificate is refused")
        let mtls = base + ["--tls-cert", "\(certs)/client.pem", "--tls-key", "\(certs)/client.key"]
        #expect(try await runProcess(m, ["produce", "secure"] + mtls, input: Data("a\nb\n".utf8)).status == 0)
        let c = try await runProcess(m, ["consume", "secure", "--from", "earliest", "--exit-at-end"] + mtls)
        #expect(c.stdout == "a\nb\n", "\(c.stderr)")
        // The same with librdkafka's property names, as a kcat user writes them.
        let viaProperties = try await runProcess(m, ["consume", "-b", broker.bootstrap, "-t", "secure", "-o", "beginning", "-e",
                                                     "-X", "security.protocol=SSL", "-X", "ssl.ca.location=\(certs)/ca.pem",
                                                     "-X", "ssl.certificate.location=\(certs)/client.pem",
                                                     "-X", "ssl.key.location=\(certs)/client.key"])
        #expect(viaProperties.stdout == "a\nb\n", "\(viaProperties.stderr)")
        // Hostname verification is on: the certificate names 127.0.0.1 and localhost, not 127.0.0.2.
        let wrongHost = try await runProcess(m, ["topics", "list", "--bootstrap", broker.bootstrap.replacingOccurrences(of: "127.0.0.1", with: "localhost"),
                                           "--tls-ca", "\(certs)/ca.pem", "--tls-cert", "\(certs)/client.pem", "--tls-key", "\(certs)/client.key"])
        #expect(wrongHost.status == 0, "localhost is in the certificate: \(wrongHost.stderr)")
        let otherCA = try await makeTestCertificates()
        defer { try? FileManager.default.removeItem(atPath: otherCA) }
        let untrusted = try await runProcess(m, ["topics", "list", "--bootstrap", broker.bootstrap, "--tls-ca", "\(otherCA)/ca.pem",
                                           "--tls-cert", "\(certs)/client.pem", "--tls-key", "\(certs)/client.key"], timeout: 60)
        #expect(untrusted.status != 0, "a broker certificate from another CA is rejected")
        #expect(untrusted.stderr.contains("TLS handshake failed") && untrusted.stderr.contains("Hint: check -X ssl.ca.location"),
                "the error says what failed and the CLI says what to check: \(untrusted.stderr)")
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func consumerSurvivesABrokerRestartMidStream() async throws {
        let port = try freePort()
        let broker = try await BrokerProcess(listeners: ["PLAINTEXT://127.0.0.1:\(port)"], arguments: ["--default-partitions", "2"])
        defer { broker.terminate(); broker.removeData() }
        #expect(try await runProcess(m, ["topics", "create", "restart", "--partitions", "2", "--bootstrap", broker.bootstrap]).status == 0)
        let out = broker.dataDir + ".consumed"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let consumer = try SpawnedProcess(m, ["consume", "restart", "--group", "survivor", "--from", "earliest", "--bootstrap", broker.bootstrap],
                                          stdoutPath: out)
        func produce(_ range: Range<Int>) async throws {
            let lines = range.map { "r\($0)" }.joined(separator: "\n") + "\n"
            #expect(try await runProcess(m, ["produce", "restart", "--bootstrap", broker.bootstrap], input: Data(lines.utf8)).status == 0)
        }
        func consumed() -> [String] { ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
        try await produce(0..<5_000)
        var deadline = Date().addingTimeInterval(30)
        while consumed().count < 5_000 && Date() < deadline { try await Task.sleep(for: .microseconds(100_000)) }
        #expect(consumed().count >= 5_000)
        broker.terminate()          // the broker goes away under the consumer...
        try await Task.sleep(for: .microseconds(1_000_000))
        try await broker.start(reuseListeners: true)  // ...and comes back on the same port
        try await produce(5_000..<10_000)
        deadline = Date().addingTimeInterval(60)
        while Set(consumed()).count < 10_000 && Date() < deadline { try await Task.sleep(for: .microseconds(100_000)) }
        consumer.stop()
        let all = consumed()
        #expect(Set(all) == Set((0..<10_000).map { "r\($0)" }), "nothing lost across the restart")
        #expect(all.count - Set(all).count <= 2_000, "duplicates only after the last commit: \(all.count - Set(all).count)")
    }

    @Test func produceConsumeRoundTripOfOneHundredThousandLines() async throws {
        let broker = try await BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        #expect(try await runProcess(m, ["topics", "create", "pipe", "--partitions", "1", "--bootstrap", broker.bootstrap]).status == 0)
        let lines = (0..<100_000).map { "line \($0) " + String(repeating: "·", count: $0 % 17) }
        let input = lines.joined(separator: "\n") + "\n"
        let shell = "\(m) produce pipe --bootstrap \(broker.bootstrap) && \(m) consume pipe --from earliest --exit-at-end --bootstrap \(broker.bootstrap)"
        let r = try await runProcess("/bin/sh", ["-c", shell], input: Data(input.utf8), timeout: 180)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == input, "the consumed text equals the produced text")
        #expect(r.stderr.contains("produced 100000 record(s)") && r.stderr.contains("consumed 100000 record(s)"))
    }

    @Test func everyCommandsHelpShowsExamples() async throws {
        for command in [["broker"], ["up"], ["topics"], ["produce"], ["consume"], ["groups"], ["groups", "reset-offsets"], ["bench"],
                        ["topology", "check"]] {
            let r = try await runProcess(m, command + ["--help"])
            #expect(r.status == 0)
            #expect(r.stdout.contains("Example"), "meridian \(command.joined(separator: " ")) --help has examples")
        }
    }

    @Test func jsonOutputCarriesPartitionOffsetKeyAndHeaders() async throws {
        let broker = try await BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        #expect(try await runProcess(m, ["produce", "js", "--key-separator", "=", "--header", "src=test", "--bootstrap", broker.bootstrap],
                               input: Data("k1=hello\n".utf8)).status == 0)
        let r = try await runProcess(m, ["consume", "js", "--from", "earliest", "--exit-at-end", "--format", "json", "--bootstrap", broker.bootstrap])
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n")[0].utf8)) as? [String: Any]
        #expect(obj?["key"] as? String == "k1")
        #expect(obj?["value"] as? String == "hello")
        #expect(obj?["offset"] as? Int == 0 && obj?["partition"] as? Int == 0)
        #expect((obj?["headers"] as? [String: String])?["src"] == "test")
        #expect((obj?["timestamp"] as? Int ?? 0) > 1_700_000_000_000)
        let kv = try await runProcess(m, ["consume", "js", "--from", "0", "--count", "1", "--format", "kv", "--bootstrap", broker.bootstrap])
        #expect(kv.stdout == "k1\thello\n")
    }
}

/// A TCP port nothing listens on right now.
func freePort() throws -> Int { try LocalPort.free() }
