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
        let up = ChildProcess(BrokerProcess.binary, ["up", "--topology", dir + "/topology.json",
                                                     "--make-certs", ExternalTools.packageRoot.appendingPathComponent("deploy/make-certs.sh").path])
        up.standardOutput = .file(out, append: true)
        up.standardError = .standardOutput
        try up.run()
        defer { up.signal(SIGKILL) }
        var text = ""
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline && !text.contains("running; press Ctrl-C") && up.isRunning {
            try await Task.sleep(for: .microseconds(50_000))
            text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        }
        #expect(text.contains("all 2 process(es) running"), "up output:\n\(text)")
        #expect(FileManager.default.fileExists(atPath: dir + "/certs/alpha-1.pem"), "missing certificates were created")
        func address(_ region: String, _ proto: String) -> String? {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("region \(region): ") }) else { return nil }
            let l = line.split(separator: " ").first { $0.contains(proto + "://") } ?? ""
            return l.split(separator: ",").first { $0.hasPrefix(proto + "://") }
                .map { String($0.dropFirst(proto.count + 3)) }
        }
        let alpha = try #require(address("alpha", "PLAINTEXT"))
        let alphaSSL = try #require(address("alpha", "SSL"))
        let beta = try #require(address("beta", "PLAINTEXT"))
        let md = try await runProcess(kcat, ["-b", beta, "-L"])
        #expect(md.stdout.contains("broker 7 at \(beta)"))
        #expect(try await runProcess(kcat, ["-b", beta, "-P", "-t", "in-beta"], input: Data("x\n".utf8)).status == 0)
        #expect(try await runProcess(kcat, ["-b", beta, "-L", "-t", "in-beta"]).stdout.contains("with 4 partitions"), "region defaults apply")
        let ssl = try await runProcess(kcat, ["-b", alphaSSL, "-X", "security.protocol=ssl", "-X", "ssl.ca.location=\(dir)/certs/ca.pem", "-L"])
        #expect(ssl.status == 0 && ssl.stdout.contains("broker 1 at \(alphaSSL)"), "\(ssl.stderr)")
        #expect(try await runProcess(kcat, ["-b", alpha, "-L"]).status == 0)

        up.signal(SIGTERM)
        let stopBy = Date().addingTimeInterval(60)
        while up.isRunning && Date() < stopBy { try await Task.sleep(for: .microseconds(50_000)) }
        #expect(!up.isRunning)
        #expect(up.terminationStatus == 0)
        text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(text.contains("alpha-broker-1: stopped cleanly") && text.contains("beta-broker-7: stopped cleanly"), "\(text)")
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

/// `meridian up` with a flow: the mirror runs, comes back after a crash, stops first; the WAN simulator.
@Suite("meridian up with mirrors", .timeLimit(.minutes(6)))
struct UpWithMirrorsTests {
    struct Up {
        var process: ChildProcess
        var out: String
        var text: String { (try? String(contentsOfFile: out, encoding: .utf8)) ?? "" }
        /// Every child pid the output named.
        var pids: [Int32] {
            text.components(separatedBy: "(pid ").dropFirst().compactMap { Int32($0.prefix { $0.isNumber }) }
        }
        func stop() async throws -> Int32 {
            process.signal(SIGTERM)
            let by = Date().addingTimeInterval(60)
            while process.isRunning && Date() < by { try await Task.sleep(for: .milliseconds(50)) }
            return process.isRunning ? -1 : process.terminationStatus
        }
    }

    /// A two-region topology (fixed free ports) with one flow us-east → eu-west of `orders`.
    func topology(_ dir: String) throws -> (path: String, us: String, eu: String) {
        let us = "127.0.0.1:\(try freePort())", eu = "127.0.0.1:\(try freePort())"
        try """
            {"version": 1, "regions": [
              {"name": "us-east", "brokers": [{"id": 1, "listeners": ["PLAINTEXT://\(us)"], "dataDir": "data/us"}]},
              {"name": "eu-west", "brokers": [{"id": 1, "listeners": ["PLAINTEXT://\(eu)"], "dataDir": "data/eu"}]}],
             "flows": [{"name": "us-to-eu", "source": "us-east", "target": "eu-west", "topics": {"include": ["orders"]}}]}
            """.write(toFile: dir + "/topology.json", atomically: true, encoding: .utf8)
        return (dir + "/topology.json", us, eu)
    }

    func start(_ topology: String, _ extra: [String] = [], out: String) async throws -> Up {
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        let p = ChildProcess(BrokerProcess.binary, ["up", "--topology", topology] + extra)
        p.standardOutput = .file(out, append: true)
        p.standardError = .standardOutput
        try p.run()
        let up = Up(process: p, out: out)
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline && !up.text.contains("running; press Ctrl-C") && p.isRunning {
            try await Task.sleep(for: .milliseconds(50))
        }
        try #require(up.text.contains("running; press Ctrl-C"), "up output:\n\(up.text)")
        return up
    }

    func kcat(_ args: [String], input: String? = nil) async throws -> ProcessResult {
        try await runProcess(try ExternalTools.require(ExternalTools.kcat, "kcat"), args, input: input.map { Data($0.utf8) })
    }

    /// Every record of a topic as `partition offset key value` lines, sorted.
    func dump(_ bootstrap: String, _ topic: String) async throws -> [String] {
        try await kcat(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %o %k %s\\n"]).stdout
            .split(separator: "\n").map(String.init).sorted()
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func upRunsTheMirrorStartsItAgainAfterAKillAndStopsMirrorsFirst() async throws {
        let dir = NSTemporaryDirectory() + "meridian-upm-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (path, us, eu) = try topology(dir)
        let up = try await start(path, out: dir + "/up.out")
        defer { up.process.signal(SIGKILL) }
        #expect(up.text.contains("region us-east: 1 broker(s) on PLAINTEXT://\(us)") && up.text.contains("region eu-west: 1 broker(s) on PLAINTEXT://\(eu)"), "\(up.text)")
        #expect(up.text.contains("mirror eu-west: us-to-eu (us-east → eu-west); metrics http://127.0.0.1:"), "\(up.text)")

        #expect(try await runProcess(BrokerProcess.binary, ["topics", "create", "orders", "--partitions", "2", "-b", us]).status == 0)
        let first = (0..<1_000).map { "k\($0 % 37)\tfirst-\($0)" }.joined(separator: "\n") + "\n"
        #expect(try await kcat(["-P", "-b", us, "-t", "orders", "-K", "\t"], input: first).status == 0)
        #expect(await eventually(60) { (try? await dump(eu, "us-east.orders").count) == 1_000 }, "records produced in the source appear in the target")

        // The mirror is killed; up starts it again and the stream completes, each record once.
        let line = try #require(up.text.split(separator: "\n").first { $0.contains("eu-west-mirror ready (pid ") })
        let mirrorPID = try #require(Int32(line.components(separatedBy: "(pid ")[1].prefix { $0.isNumber }))
        kill(mirrorPID, SIGKILL)
        let second = (0..<1_000).map { "k\($0 % 37)\tsecond-\($0)" }.joined(separator: "\n") + "\n"
        #expect(try await kcat(["-P", "-b", us, "-t", "orders", "-K", "\t"], input: second).status == 0)
        #expect(await eventually(60) { up.text.contains("eu-west-mirror started again") }, "\(up.text)")
        #expect(up.text.contains("eu-west-mirror exited unexpectedly (killed by signal 9); starting it again in 1.0 s"), "\(up.text)")
        #expect(await eventually(90) { (try? await dump(eu, "us-east.orders").count) == 2_000 }, "\(up.text)")
        let source = try await dump(us, "orders"), target = try await dump(eu, "us-east.orders")
        #expect(source == target, "every record once, at the same partition and offset")

        let pids = up.pids
        #expect(pids.count >= 4, "two brokers, the mirror and its restart: \(pids)")
        #expect(try await up.stop() == 0, "\(up.text)")
        let text = up.text
        let stopping = try #require(text.range(of: "stopping: mirrors first"))
        let mirrorStopped = try #require(text.range(of: "eu-west-mirror: stopped cleanly"), "\(text)")
        let brokerStopped = try #require(text.range(of: "us-east-broker-1: stopped cleanly"), "\(text)")
        #expect(stopping.lowerBound < mirrorStopped.lowerBound && mirrorStopped.lowerBound < brokerStopped.lowerBound)
        for pid in pids { #expect(kill(pid, 0) == -1 && errno == ESRCH, "process \(pid) is gone") }
    }

    /// What a crash of `up` (or of a test process) looks like to its children: the parent is gone
    /// without a word. They die with it instead of lingering as orphans holding ports and data.
    @Test func aKilledUpTakesItsBrokersAndMirrorWithIt() async throws {
        let dir = NSTemporaryDirectory() + "meridian-upk-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (path, _, _) = try topology(dir)
        let up = try await start(path, out: dir + "/up.out")
        defer { up.process.signal(SIGKILL) }
        let pids = up.pids
        #expect(pids.count == 3, "two brokers and the mirror: \(up.text)")
        for pid in pids { #expect(kill(pid, 0) == 0, "child \(pid) runs") }
        up.process.signal(SIGKILL)
        up.process.waitUntilExit()
        // The kernel delivers their SIGKILL as `up` exits; they are reaped by init right after.
        let gone = await eventually(10) { pids.allSatisfy { kill($0, 0) == -1 && errno == ESRCH } }
        #expect(gone, "every child of the killed up has died: \(pids.filter { kill($0, 0) == 0 })")
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func aSimulatedWANLatencyRaisesTheTimeARecordTakesToCross() async throws {
        // Two topologies run side by side, one behind a 50 ms (each way) simulated WAN, and one
        // script measures both at once: whatever else loads the machine loads both alike.
        let python = try ExternalTools.require(ExternalTools.python, "python venv")
        var ups: [Up] = []
        defer { for u in ups { u.process.signal(SIGKILL) } }
        var addresses: [(us: String, eu: String)] = []
        var dirs: [String] = []
        defer { for d in dirs { try? FileManager.default.removeItem(atPath: d) } }
        for extra in [[], ["--wan-latency", "50ms"]] {
            let dir = NSTemporaryDirectory() + "meridian-upw-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            dirs.append(dir)
            let (path, us, eu) = try topology(dir)
            let up = try await start(path, extra, out: dir + "/up.out")
            ups.append(up)
            if !extra.isEmpty { #expect(up.text.contains("simulated WAN between regions: 50.0 ms each way, 1 link(s)"), "\(up.text)") }
            #expect(try await runProcess(BrokerProcess.binary, ["topics", "create", "orders", "--partitions", "2", "-b", us]).status == 0)
            #expect(try await kcat(["-P", "-b", us, "-t", "orders"], input: "warm-up\n").status == 0)
            #expect(await eventually(60) { ((try? await dump(eu, "us-east.orders"))?.count ?? 0) >= 1 }, "the remote topic exists")
            addresses.append((us, eu))
        }
        // One record every 20 ms into each source, alternately; each target read as it arrives:
        // (time read − the record's source timestamp) in ms. Prints p50 and minimum per topology.
        let measure = """
            import sys, time
            from confluent_kafka import Producer, Consumer, TopicPartition, OFFSET_END
            pairs = [(sys.argv[1], sys.argv[2]), (sys.argv[3], sys.argv[4])]
            cs, ps = [], []
            for i, (src, dst) in enumerate(pairs):
                c = Consumer({"bootstrap.servers": dst, "group.id": "latency-%d" % i, "fetch.wait.max.ms": 5, "enable.auto.commit": False})
                c.assign([TopicPartition("us-east.orders", p, OFFSET_END) for p in range(2)])
                cs.append(c)
                ps.append(Producer({"bootstrap.servers": src, "linger.ms": 0}))
            for _ in range(20):
                for c in cs: c.poll(0.025)
            lat = [[], []]
            sent, end, next_send = 0, time.time() + 90, time.time()
            while min(len(l) for l in lat) < 80 and time.time() < end:
                if sent < 200 and time.time() >= next_send:
                    ps[sent % 2].produce("orders", key=b"k%d" % sent, value=b"v"); ps[sent % 2].poll(0); sent += 1; next_send += 0.01
                for i, c in enumerate(cs):
                    m = c.poll(0.001)
                    if m is not None and not m.error():
                        lat[i].append(time.time() * 1000 - m.timestamp()[1])
            for p in ps: p.flush(5)
            for l in lat: l.sort()
            print(" ".join("%.1f %.1f %d" % (l[len(l) // 2], l[0], len(l)) for l in lat))
            """
        let r = try await runProcess(python, ["-c", measure, addresses[0].us, addresses[0].eu, addresses[1].us, addresses[1].eu], timeout: 150)
        let v = r.stdout.split(separator: " ").compactMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        try #require(v.count == 6, "\(r.stdout)\(r.stderr)")
        print("produce → mirrored record, p50: \(v[0]) ms without the WAN simulator, \(v[3]) ms with 50 ms each way (minimum \(v[1]) and \(v[4]) ms; \(Int(v[2])) and \(Int(v[5])) records)")
        #expect(v[4] >= 50, "behind the simulator no record crosses faster than one way: \(v)")
        // Under a heavy load the machine's own delays overlap the link's, so only the direction is
        // asserted for the medians (idle: 10.7 vs 113.7 ms; the floor above holds whatever the load).
        #expect(v[3] > v[0], "measured at the same time, the simulated link raises the median: \(v)")
        for u in ups { #expect(try await u.stop() == 0, "\(u.text)") }
    }
}

/// `meridian demo` as the README's first command: every step, an exact failover and audit, and nothing left behind.
@Suite("meridian demo", .timeLimit(.minutes(5)))
struct DemoTests {
    @Test func theDemoShowsEveryStepFailsOverExactlyAndLeavesNothingRunning() async throws {
        let dir = NSTemporaryDirectory() + "meridian-demo-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let started = Date()
        // Run from the checkout (where deploy/make-certs.sh is), as the README says.
        let p = ChildProcess(BrokerProcess.binary, ["demo", "--dir", dir, "--seconds", "8", "--rate", "100"])
        p.currentDirectoryPath = ExternalTools.packageRoot.path
        let out = NSTemporaryDirectory() + "demo-\(UUID().uuidString.prefix(8)).out"
        defer { try? FileManager.default.removeItem(atPath: out) }
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        p.standardOutput = .file(out, append: true)
        p.standardError = .standardOutput
        try p.run()
        while p.isRunning && Date().timeIntervalSince(started) < 240 { try await Task.sleep(for: .milliseconds(200)) }
        if p.isRunning { p.signal(SIGKILL); p.waitUntilExit() }
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(!p.isRunning && p.terminationStatus == 0, "\(text)")
        for n in 1...8 { #expect(text.contains("[\(n)/8 "), "step \(n) is announced:\n\(text)") }
        #expect(text.contains("re-read 0, skipped 0"), "\(text)")
        #expect(text.contains("exact: ") && text.contains("records in 3 partitions, each once"), "\(text)")
        #expect(text.contains("FLOW") && text.contains("RECORDS BEHIND"), "the live lag table")
        #expect(text.contains("nothing left listening"), "\(text)")
        #expect(FileManager.default.fileExists(atPath: dir + "/lag-report.html"))
        // Every process `meridian up` started is gone.
        let upText = (try? String(contentsOfFile: dir + "/up.out", encoding: .utf8)) ?? ""
        let pids = upText.components(separatedBy: "(pid ").dropFirst().compactMap { Int32($0.prefix { $0.isNumber }) }
        #expect(pids.count == 6, "3 brokers and 3 mirrors: \(upText)")
        for pid in pids { #expect(kill(pid, 0) == -1 && errno == ESRCH, "process \(pid) is gone") }
    }
}

/// `meridian topology check` points at each problem's place in the file and says what to do;
/// `deploy/make-certs.sh` puts the listeners' hosts in the certificates.
@Suite("Topology check and certificates", .timeLimit(.minutes(2)))
struct TopologyCheckTests {
    @Test func everyProblemHasItsLineColumnPathAndAFix() async throws {
        let dir = NSTemporaryDirectory() + "meridian-check-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let closed = try freePort()
        try """
            {"version": 1,
             "regions": [
              {"name": "us-east", "tls": {"ca": "certs/ca.pem"},
               "brokers": [{"id": 1, "listeners": ["PLAINTEXT://127.0.0.1:9092", "SSL://127.0.0.1:9093"], "dataDir": "us",
                            "tls": {"cert": "certs/us-east-broker-1.pem", "key": "certs/us-east-broker-1.key"}}]},
              {"name": "eu-west",
               "brokers": [{"id": 1, "listeners": ["PLAINTEXT://127.0.0.1:9092"], "dataDir": "eu"}]},
              {"name": "ext", "bootstrap": ["127.0.0.1:\(closed)"]}
             ],
             "flows": [
              {"name": "a", "source": "us-east", "target": "mars"},
              {"name": "b", "source": "eu-west", "target": "us-east", "tls": true}
             ]}
            """.write(toFile: dir + "/t.json", atomically: true, encoding: .utf8)
        let path = dir + "/t.json"
        let r = try await runProcess(BrokerProcess.binary, ["topology", "check", "--topology", path, "--connect"])
        #expect(r.status == 1)
        let lines = r.stderr.split(separator: "\n").map(String.init)
        func line(_ needle: String) -> String? { lines.first { $0.contains(needle) } }
        #expect(line("clashes with region 'us-east' broker 1")?.hasPrefix("\(path):7:40: problem: ") == true
                && line("clashes with")?.hasSuffix("(at regions[1].brokers[0].listeners[0])") == true, "a port used in two regions: \(lines)")
        #expect(line("target region 'mars' is not defined")?.hasPrefix("\(path):11:48: ") == true, "an unknown region in a flow: \(lines)")
        #expect(line("has no SSL listener; add one or set \"tls\": false")?.hasPrefix("\(path):12:66: ") == true, "a TLS flow without an SSL listener")
        #expect(line("certificate certs/us-east-broker-1.pem does not exist")?.contains("run deploy/make-certs.sh --out certs us-east-broker-1") == true,
                "a missing certificate, with the command that makes it: \(lines)")
        #expect(line("CA file certs/ca.pem does not exist")?.hasPrefix("\(path):3:37: ") == true)
        #expect(line("bootstrap 127.0.0.1:\(closed) does not answer")?.hasSuffix("(at regions[2].bootstrap[0])") == true, "--connect: \(lines)")
        #expect(lines.last == "8 problem(s)", "\(lines)")
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.openssl)))
    func makeCertsPutsTheListenersHostsInTheServerCertificate() async throws {
        let dir = NSTemporaryDirectory() + "meridian-certs-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = ExternalTools.packageRoot.appendingPathComponent("deploy/make-certs.sh").path
        let made = try await runProcess("/bin/bash", [script, "--out", dir, "us-east-broker-1=10.1.2.3,kafka1.us-east.example.com", "--client", "mirror-eu-west"])
        #expect(made.status == 0, "\(made.stderr)")
        let openssl = try ExternalTools.require(ExternalTools.openssl, "openssl")
        let text = try await runProcess(openssl, ["x509", "-in", dir + "/us-east-broker-1.pem", "-noout", "-text"]).stdout
        #expect(text.contains("IP Address:10.1.2.3") && text.contains("DNS:kafka1.us-east.example.com") && text.contains("DNS:localhost"), "\(text)")
        #expect(FileManager.default.fileExists(atPath: dir + "/mirror-eu-west.pem"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/client.pem") && !FileManager.default.fileExists(atPath: dir + "/broker.pem"),
                "only what was asked for")
    }
}
