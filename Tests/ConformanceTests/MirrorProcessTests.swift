import Foundation
import Testing
import TestSupport

/// `meridian mirror` as operators run it: two broker processes (the source requiring mTLS), the
/// mirror process killed with SIGKILL while the source keeps receiving records, real clients on
/// both sides.
@Suite("meridian mirror", .timeLimit(.minutes(6)))
struct MirrorProcessTests {
    func kcat(_ args: [String], input: String? = nil, timeout: Double = 120) async throws -> ProcessResult {
        try await runProcess(try ExternalTools.require(ExternalTools.kcat, "kcat"), args, input: input.map { Data($0.utf8) }, timeout: timeout)
    }

    /// Every record of a topic as `partition offset key value headers timestamp` lines, sorted.
    func dump(_ bootstrap: String, _ topic: String) async throws -> [String] {
        let r = try await kcat(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %o %k %s %h %T\\n"])
        return r.stdout.split(separator: "\n").map(String.init).sorted()
    }

    /// `partition offset` of the last record of each partition, sorted: cheap to poll while a copy runs.
    func lastOffsets(_ bootstrap: String, _ topic: String) async throws -> [String] {
        let r = try await kcat(["-C", "-b", bootstrap, "-t", topic, "-o", "-1", "-e", "-q", "-f", "%p %o\\n"])
        return r.stdout.split(separator: "\n").map(String.init).sorted()
    }

    /// Waits until the target topic's partitions end where the source's do (polling only the tails).
    func caughtUp(_ source: String, _ topic: String, _ target: String, _ remote: String, seconds: Double) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            let want = try await lastOffsets(source, topic)
            if !want.isEmpty, try await lastOffsets(target, remote) == want { return true }
            try await Task.sleep(for: .milliseconds(500))
        }
        return false
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func aMirrorKilledFiveTimesCopiesEveryRecordOnceAndAGroupFailsOverExactly() async throws {
        let certs = try await makeTestCertificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let us = try await BrokerProcess(
            listeners: ["PLAINTEXT://127.0.0.1:0", "SSL://127.0.0.1:0"],
            arguments: ["--tls-cert", "\(certs)/broker.pem", "--tls-key", "\(certs)/broker.key", "--tls-ca", "\(certs)/ca.pem",
                        "--tls-client-auth", "required"])
        defer { us.terminate(); us.removeData() }
        // The target region is given with its SSL listener only: the mirror writes over mTLS with
        // the certificate make-certs.sh would make for it (here a copy of the client one); the
        // test's own checks use the PLAINTEXT listener.
        let eu = try await BrokerProcess(
            listeners: ["PLAINTEXT://127.0.0.1:0", "SSL://127.0.0.1:0"],
            arguments: ["--tls-cert", "\(certs)/broker.pem", "--tls-key", "\(certs)/broker.key", "--tls-ca", "\(certs)/ca.pem",
                        "--tls-client-auth", "required"])
        defer { eu.terminate(); eu.removeData() }
        for ext in ["pem", "key"] { try FileManager.default.copyItem(atPath: "\(certs)/client.\(ext)", toPath: "\(certs)/mirror-eu-west.\(ext)") }
        let dir = NSTemporaryDirectory() + "meridian-mirror-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let topology = """
            {"version": 1,
             "regions": [
              {"name": "us-east", "tls": {"ca": "\(certs)/ca.pem", "cert": "\(certs)/broker.pem", "key": "\(certs)/broker.key", "clientAuth": "required"},
               "brokers": [{"id": 1, "listeners": ["PLAINTEXT://\(us.bootstrap)", "SSL://\(us.address(of: "SSL")!)"], "dataDir": "us"}]},
              {"name": "eu-west", "tls": {"ca": "\(certs)/ca.pem", "cert": "\(certs)/broker.pem", "key": "\(certs)/broker.key", "clientAuth": "required"},
               "brokers": [{"id": 1, "listeners": ["SSL://\(eu.address(of: "SSL")!)"], "dataDir": "eu"}]}],
             "flows": [{"name": "us-to-eu", "source": "us-east", "target": "eu-west", "topics": {"include": ["orders"]},
                        "tls": true, "clientCert": "\(certs)/client.pem", "clientKey": "\(certs)/client.key", "groupSyncIntervalMs": 500}]}
            """
        try topology.write(toFile: dir + "/topology.json", atomically: true, encoding: .utf8)
        let check = try await runProcess(BrokerProcess.binary, ["topology", "check", "--topology", dir + "/topology.json"])
        try #require(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(try await runProcess(BrokerProcess.binary, ["topics", "create", "orders", "--partitions", "3", "-b", us.bootstrap]).status == 0)

        // 200,000 keyed records with headers, half of them gzip batches, produced while the
        // mirror is killed again and again.
        let total = 200_000
        let producing = Task {
            for chunk in 0..<4 {
                let lines = (chunk * 50_000..<(chunk + 1) * 50_000).map { "key-\($0 % 1013)\tvalue-\($0)" }.joined(separator: "\n") + "\n"
                let r = try await kcat(["-P", "-b", us.bootstrap, "-t", "orders", "-K", "\t", "-H", "chunk=\(chunk)", "-H", "src=us",
                                        "-z", chunk % 2 == 0 ? "gzip" : "none"], input: lines)
                guard r.status == 0 else { throw BrokerFailed(message: "kcat produce failed: \(r.stderr)") }
            }
        }
        let mirrorArgs = ["mirror", "--topology", dir + "/topology.json", "--region", "eu-west"]
        let log = dir + "/mirror.log"
        // The kill moments are random (MERIDIAN_TEST_SEED replays them; failures name the seed).
        let seed = ProcessInfo.processInfo.environment["MERIDIAN_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
        var rng = SplitMix64(seed: seed)
        for _ in 0..<5 {
            let m = try SpawnedProcess(BrokerProcess.binary, mirrorArgs, stdoutPath: dir + "/mirror.out", stderrPath: log)
            try await Task.sleep(for: .milliseconds(Int.random(in: 300...1_500, using: &rng)))
            m.stop(SIGKILL)
        }
        try await producing.value
        let mirror = try SpawnedProcess(BrokerProcess.binary, mirrorArgs + ["--metrics", "127.0.0.1:0"], stdoutPath: dir + "/mirror.out",
                                        stderrPath: log)
        _ = try await caughtUp(us.bootstrap, "orders", eu.bootstrap, "us-east.orders", seconds: 120)
        try await checkMetrics(printedIn: dir + "/mirror.out", partitions: 3)
        let target = try await dump(eu.bootstrap, "us-east.orders")
        let source = try await dump(us.bootstrap, "orders")
        let mirrorLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(source.count == total)
        #expect(target.count == total, "seed \(seed): target has \(target.count) of \(total); mirror log tail:\n\(mirrorLog.suffix(3_000))")
        let firstDifference = zip(source, target).first { $0 != $1 }.map { "source \($0.0) vs target \($0.1)" }
        #expect(firstDifference == nil, "every record once, same partition, offset, key, value, headers and timestamp")
        #expect(Set(target.map { $0.split(separator: " ").dropFirst(2).first ?? "" }).count == 1_013)

        // A group consumes part of the source, then fails over: it reads exactly the rest.
        let consumed = try await kcat(["-b", us.bootstrap, "-G", "billing", "-X", "auto.offset.reset=earliest", "-c", "30000", "-q",
                                       "-f", "%p %o\\n", "orders"], timeout: 120)
        #expect(consumed.status == 0, "\(consumed.stderr)")
        var committed: [String: Int] = [:]
        var translated: [String: Int] = [:]
        let synced = await eventually(30) {
            guard let r = try? await runProcess(BrokerProcess.binary, ["offsets", "translate", "--topology", dir + "/topology.json",
                                                                        "--flow", "us-to-eu", "--group", "billing", "--format", "json"]) else { return false }
            committed = [:]
            translated = [:]
            for line in r.stdout.split(separator: "\n") {
                guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let p = o["partition"] as? Int, let s = o["sourceOffset"] as? Int, let t = o["targetOffset"] as? Int else { continue }
                committed["\(p)"] = s
                translated["\(p)"] = t
            }
            // The target group holds the translated offsets (synced only forwards, so once equal it stays).
            var inTarget: [String: Int] = [:]
            let d = try? await runProcess(BrokerProcess.binary, ["groups", "describe", "billing", "-b", eu.bootstrap, "--format", "json"])
            for line in d?.stdout.split(separator: "\n") ?? [] {
                guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      o["topic"] as? String == "us-east.orders", let p = o["partition"] as? Int, let c = o["currentOffset"] as? Int else { continue }
                inTarget["\(p)"] = c
            }
            return committed.values.reduce(0, +) == 30_000 && inTarget == translated
        }
        #expect(synced, "committed \(committed), translated \(translated)")
        #expect(committed == translated, "no gaps in the source: the exact target offsets equal the source offsets")
        // Same consumer settings as in the source: partitions the group never committed start at the beginning.
        let rest = try await kcat(["-b", eu.bootstrap, "-G", "billing", "-X", "auto.offset.reset=earliest", "-c", "\(total - 30_000)", "-q", "-f", "%p %o\\n", "us-east.orders"], timeout: 120)
        let resumed = rest.stdout.split(separator: "\n").map(String.init)
        let reRead = Set(resumed).intersection(consumed.stdout.split(separator: "\n").map(String.init))
        #expect(resumed.count == total - 30_000 && reRead.isEmpty,
                "failover re-read \(reRead.count), read \(resumed.count) of \(total - 30_000) (kcat status \(rest.status): \(rest.stderr.suffix(500)))")

        let status = mirror.stop(SIGTERM)
        #expect(status == 0, "the mirror exits 0 on SIGTERM (wait status \(status))")
    }
}

extension MirrorProcessTests {
    /// Reads the metrics address the mirror printed, then checks `/metrics` with Prometheus's own
    /// Python parser and `/lag` as JSON: every partition caught up and running.
    func checkMetrics(printedIn out: String, partitions: Int) async throws {
        var address: String?
        _ = await eventually(20) {
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            address = text.split(separator: "\n").last { $0.contains("metrics on http://") }
                .flatMap { $0.split(separator: " ").first { $0.hasPrefix("http://") } }.map { String($0.dropLast("/metrics".count).dropLast(1)) }
            return address != nil
        }
        let base = try #require(address, "the mirror prints where it serves metrics")
        let python = try ExternalTools.require(ExternalTools.python, "python venv")
        let code = """
            import json, sys, urllib.request
            from prometheus_client.parser import text_string_to_metric_families
            text = urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=10).read().decode()
            fams = {f.name: f for f in text_string_to_metric_families(text)}
            lag = json.loads(urllib.request.urlopen(sys.argv[1] + "/lag", timeout=10).read())
            print(json.dumps({"families": sorted(fams), "types": {n: f.type for n, f in fams.items()},
                              "lagRecords": sum(s.value for s in fams["meridian_mirror_lag_records"].samples),
                              "rows": lag["partitions"]}))
            """
        var result: [String: Any] = [:]
        // Lag is 0 once the mirror has seen the source's high watermark after its last copy. Only
        // the data topic settles: the source's heartbeats topic is written every second (by the
        // mirror itself), so it is one record behind now and then whatever the copy does (CI: a
        // heartbeat landed between the /metrics and the /lag read).
        func orders(_ j: [String: Any]) -> [[String: Any]] { (j["rows"] as? [[String: Any]] ?? []).filter { $0["topic"] as? String == "orders" } }
        let settled = await eventually(30) {
            guard let r = try? await runProcess(python, ["-c", code, base]), r.status == 0,
                  let j = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else { return false }
            result = j
            let rows = orders(j)
            return rows.count >= partitions && rows.allSatisfy { $0["lagRecords"] as? Int == 0 && $0["lagSeconds"] as? Double == 0 }
        }
        #expect(settled, "\(result)")
        let families = result["families"] as? [String] ?? []
        for name in ["meridian_mirror_lag_records", "meridian_mirror_lag_seconds", "meridian_mirror_copied_offset",
                     "meridian_mirror_source_high_watermark", "meridian_mirror_transfer_seconds", "meridian_mirror_partition_state",
                     "meridian_mirror_copied_records", "meridian_mirror_copied_bytes"] {
            // The parser names a counter family without its `_total` suffix.
            #expect(families.contains(name) || families.contains(name + "_total"), "\(name) in \(families)")
        }
        #expect((result["types"] as? [String: String])?["meridian_mirror_copied_records"] == "counter", "\(result["types"] ?? "")")
        let rows = result["rows"] as? [[String: Any]] ?? []
        #expect(rows.allSatisfy { $0["state"] as? String == "running" }, "\(rows)")
        #expect(orders(result).allSatisfy { $0["lagSeconds"] as? Double == 0 }, "\(rows)")
        // `meridian lag` reads the same through the region's mirrorMetrics address.
        let topology = (out as NSString).deletingLastPathComponent + "/topology.json"
        var topo = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: topology))) as? [String: Any] ?? [:]
        var regions = topo["regions"] as? [[String: Any]] ?? []
        for i in regions.indices where regions[i]["name"] as? String == "eu-west" { regions[i]["mirrorMetrics"] = String(base.dropFirst("http://".count)) }
        topo["regions"] = regions
        let withMetrics = topology + ".metrics.json"
        try JSONSerialization.data(withJSONObject: topo).write(to: URL(fileURLWithPath: withMetrics))
        let lag = try await runProcess(BrokerProcess.binary, ["lag", "--topology", withMetrics])
        #expect(lag.status == 0, "\(lag.stdout)\(lag.stderr)")
        let lines = lag.stdout.split(separator: "\n")
        #expect(lines.first?.hasPrefix("FLOW") == true && lines.filter { $0.hasPrefix("us-to-eu ") && $0.hasSuffix("running") }.count >= partitions,
                "\(lag.stdout)")
        // A mirror that does not answer is reported at once, and the lag is computed from the
        // clusters over mTLS instead (everything copied, so every partition is caught up).
        for i in regions.indices where regions[i]["name"] as? String == "eu-west" { regions[i]["mirrorMetrics"] = "127.0.0.1:1" }
        topo["regions"] = regions
        try JSONSerialization.data(withJSONObject: topo).write(to: URL(fileURLWithPath: withMetrics))
        let started = ContinuousClock.now
        let down = try await runProcess(BrokerProcess.binary, ["lag", "--topology", withMetrics])
        #expect(down.status == 0 && down.stderr.contains("did not answer"), "\(down.stdout)\(down.stderr)")
        #expect(down.stdout.split(separator: "\n").filter { $0.hasPrefix("us-to-eu ") && $0.hasSuffix("caught-up") }.count >= partitions,
                "\(down.stdout)")
        // Measured on the test pool, which a loaded machine delays: the bound is loose, the mirror's
        // 3 s HTTP timeout is what keeps it short.
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func twoMirrorProcessesSplitAFlowAndTheSurvivorTakesOverWithoutDuplicates() async throws {
        let us = try await BrokerProcess(arguments: ["--group-initial-rebalance-delay-ms", "500", "--group-min-session-timeout-ms", "1000"])
        defer { us.terminate(); us.removeData() }
        let eu = try await BrokerProcess()
        defer { eu.terminate(); eu.removeData() }
        let dir = NSTemporaryDirectory() + "meridian-mirror2-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { if ProcessInfo.processInfo.environment["MERIDIAN_KEEP_TEST_DIRS"] == nil { try? FileManager.default.removeItem(atPath: dir) } }
        try """
            {"version": 1,
             "regions": [{"name": "us-east", "bootstrap": ["\(us.bootstrap)"]}, {"name": "eu-west", "bootstrap": ["\(eu.bootstrap)"]}],
             "flows": [{"name": "us-to-eu", "source": "us-east", "target": "eu-west", "topics": {"include": ["orders"]}}]}
            """.write(toFile: dir + "/topology.json", atomically: true, encoding: .utf8)
        #expect(try await runProcess(BrokerProcess.binary, ["topics", "create", "orders", "--partitions", "6", "-b", us.bootstrap]).status == 0)
        let total = 120_000
        let producing = Task {
            for chunk in 0..<4 {
                let lines = (chunk * 30_000..<(chunk + 1) * 30_000).map { "k\($0 % 500)\tv\($0)" }.joined(separator: "\n") + "\n"
                let r = try await kcat(["-P", "-b", us.bootstrap, "-t", "orders", "-K", "\t"], input: lines)
                guard r.status == 0 else { throw BrokerFailed(message: "kcat produce failed: \(r.stderr)") }
            }
        }
        func start(_ id: String) throws -> SpawnedProcess {
            try SpawnedProcess(BrokerProcess.binary, ["mirror", "--topology", dir + "/topology.json", "--region", "eu-west",
                                                      "--instance-id", id, "--member-session-timeout-ms", "2000"],
                               stdoutPath: dir + "/\(id).out", stderrPath: dir + "/\(id).log")
        }
        let a = try start("a")
        let b = try start("b")
        func log(_ id: String) -> String { (try? String(contentsOfFile: dir + "/\(id).log", encoding: .utf8)) ?? "" }
        func owned(_ id: String) -> Int {
            // The last "owned=N" the process logged.
            guard let r = log(id).range(of: "owned=", options: .backwards) else { return 0 }
            return Int(log(id)[r.upperBound...].prefix { $0.isNumber }) ?? 0
        }
        // Six partitions of orders and the source's heartbeats partition.
        let split = await eventually(60) { owned("a") > 0 && owned("b") > 0 && owned("a") + owned("b") == 7 }
        #expect(split, "the two processes split the seven partitions (a: \(owned("a")), b: \(owned("b")))\n\(log("a").suffix(1_500))")
        // Let both copy for a moment, then one dies mid-stream.
        _ = await eventually(10) { ((try? await lastOffsets(eu.bootstrap, "us-east.orders")) ?? []).count >= 3 }
        a.stop(SIGKILL)
        let takenOver = await eventually(60) { owned("b") == 7 }
        #expect(takenOver, "the survivor takes every partition\n\(log("b").suffix(1_500))")
        try await producing.value
        _ = try await caughtUp(us.bootstrap, "orders", eu.bootstrap, "us-east.orders", seconds: 90)
        let target = try await dump(eu.bootstrap, "us-east.orders")
        let source = try await dump(us.bootstrap, "orders")
        #expect(source.count == total && target.count == total, "target has \(target.count) of \(total); logs in \(dir)")
        #expect(zip(source, target).first { $0 != $1 } == nil, "every record once, in order, in its partition")
        #expect(b.stop(SIGTERM) == 0)
    }
}
