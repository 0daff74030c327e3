import Foundation
import Testing
import TestSupport

/// `meridian lag` and `meridian lag report` as an operator uses them, against two broker processes
/// and a mirror process that is stopped and started again.
@Suite("meridian lag", .timeLimit(.minutes(6)))
struct LagProcessTests {
    func kcat(_ args: [String], input: String? = nil) async throws -> ProcessResult {
        try await runProcess(try ExternalTools.require(ExternalTools.kcat, "kcat"), args, input: input.map { Data($0.utf8) })
    }

    /// Where the mirror writing `out` serves metrics (host:port), once it has printed it.
    func metricsAddress(_ out: String) async -> String? {
        var address: String?
        _ = await eventually(30) {
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            guard let r = text.range(of: "metrics on http://") else { return false }
            address = text[r.upperBound...].split(separator: "/").first.map(String.init)
            return address != nil
        }
        return address
    }

    struct Reading {
        var status: Int32
        var records: Int64 = 0
        var maxSeconds: Double = 0
        var states: Set<String> = []
        var partitions = 0
        var notes: [String] = []
        var raw: String
    }

    func lag(_ topology: String) async throws -> Reading {
        let r = try await runProcess(BrokerProcess.binary, ["lag", "--topology", topology, "--format", "json"], timeout: 60)
        var reading = Reading(status: r.status, raw: r.stdout + r.stderr)
        guard let o = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else { return reading }
        for p in o["partitions"] as? [[String: Any]] ?? [] where p["topic"] as? String == "orders" {
            reading.records += (p["lagRecords"] as? NSNumber)?.int64Value ?? 0
            reading.maxSeconds = max(reading.maxSeconds, (p["lagSeconds"] as? NSNumber)?.doubleValue ?? 0)
            reading.states.insert(p["state"] as? String ?? "?")
            reading.partitions += 1
        }
        reading.notes = o["notes"] as? [String] ?? []
        return reading
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat) && ExternalTools.shouldRun(ExternalTools.chromium)))
    func stoppingTheMirrorMakesLagGrowPastTheObjectiveAndARestartBringsItBackWithItsHistory() async throws {
        let us = try await BrokerProcess()
        defer { us.terminate(); us.removeData() }
        let eu = try await BrokerProcess()
        defer { eu.terminate(); eu.removeData() }
        let dir = NSTemporaryDirectory() + "meridian-lag-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let topology = dir + "/topology.json"
        func writeTopology(mirrorMetrics: String) throws {
            try """
                {"version": 1,
                 "regions": [
                  {"name": "us-east", "brokers": [{"id": 1, "listeners": ["PLAINTEXT://\(us.bootstrap)"], "dataDir": "us"}]},
                  {"name": "eu-west", "mirrorMetrics": "\(mirrorMetrics)",
                   "brokers": [{"id": 1, "listeners": ["PLAINTEXT://\(eu.bootstrap)"], "dataDir": "eu"}]}],
                 "flows": [{"name": "us-to-eu", "source": "us-east", "target": "eu-west", "topics": {"include": ["orders"]},
                            "slo": {"maxLagSeconds": 3, "maxLagRecords": 1000}}]}
                """.write(toFile: topology, atomically: true, encoding: .utf8)
        }
        try writeTopology(mirrorMetrics: "127.0.0.1:1")  // the mirror's --metrics below picks a free port instead
        #expect(try await runProcess(BrokerProcess.binary, ["topics", "create", "orders", "--partitions", "2", "-b", us.bootstrap]).status == 0)
        let batch = (0..<50).map { "k\($0)\tv\($0)" }.joined(separator: "\n") + "\n"
        #expect(try await kcat(["-P", "-b", us.bootstrap, "-t", "orders", "-K", "\t"], input: batch).status == 0)

        let mirrorArgs = ["mirror", "--topology", topology, "--region", "eu-west", "--metrics", "127.0.0.1:0",
                          "--history-interval", "0.25", "--history-file", dir + "/history.jsonl"]
        var mirror = try SpawnedProcess(BrokerProcess.binary, mirrorArgs, stdoutPath: dir + "/mirror1.out", stderrPath: dir + "/mirror.log")
        let first = try #require(await metricsAddress(dir + "/mirror1.out"), "the mirror prints its metrics address")
        try writeTopology(mirrorMetrics: first)
        var reading = Reading(status: -1, raw: "")
        #expect(await eventually(60) {
            reading = (try? await lag(topology)) ?? reading
            return reading.status == 0 && reading.partitions == 2 && reading.records == 0 && reading.states == ["running"]
        }, "caught up with the mirror running: \(reading.raw)")

        // Some history before the stop (one point per 0.25 s).
        let python = try ExternalTools.require(ExternalTools.python, "python venv")
        func historyTimes(_ address: String) async -> [Int64] {
            guard let r = try? await runProcess(python, ["-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())",
                                                         "http://\(address)/history"], timeout: 20),
                  let o = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else { return [] }
            return (o["times"] as? [NSNumber] ?? []).map(\.int64Value)
        }
        #expect(await eventually(30) { await historyTimes(first).count >= 3 })

        // The mirror stops while records keep arriving.
        let stoppedAt = Int64(Date().timeIntervalSince1970 * 1000)
        #expect(mirror.stop(SIGTERM) == 0)
        let producing = Task {
            var i = 0
            while !Task.isCancelled {
                _ = try? await kcat(["-P", "-b", us.bootstrap, "-t", "orders", "-K", "\t"], input: "p\(i)\tmore-\(i)\n")
                i += 1
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        var earlier = Reading(status: -1, raw: "")
        #expect(await eventually(30) {
            earlier = (try? await lag(topology)) ?? earlier
            return earlier.records > 0 && earlier.states == ["stalled"]
        }, "behind and stalled: \(earlier.raw)")
        #expect(earlier.notes.contains { $0.contains("did not answer") }, "says the lag comes from the clusters: \(earlier.notes)")
        var later = Reading(status: -1, raw: "")
        #expect(await eventually(60) {
            later = (try? await lag(topology)) ?? later
            return later.records > earlier.records && later.maxSeconds > earlier.maxSeconds && later.status == 2
        }, "lag grows in records and seconds until the 3 s objective is missed (exit 2): \(earlier.raw) then \(later.raw)")
        let text = try await runProcess(BrokerProcess.binary, ["lag", "--topology", topology], timeout: 60)
        #expect(text.status == 2 && text.stdout.contains("objective missed: us-to-eu orders-") && text.stdout.contains("stalled"),
                "\(text.stdout)\(text.stderr)")
        producing.cancel()
        await producing.value

        // Back again: the lag returns to 0 and the history from before the stop is still there.
        mirror = try SpawnedProcess(BrokerProcess.binary, mirrorArgs, stdoutPath: dir + "/mirror2.out", stderrPath: dir + "/mirror.log")
        defer { mirror.stop(SIGKILL) }
        let second = try #require(await metricsAddress(dir + "/mirror2.out"))
        try writeTopology(mirrorMetrics: second)
        #expect(await eventually(60) {
            reading = (try? await lag(topology)) ?? reading
            return reading.status == 0 && reading.records == 0 && reading.states == ["running"] && reading.notes.isEmpty
        }, "caught up again: \(reading.raw)")

        // Everything the source got while the mirror was down is now in the target, exactly once.
        let audit = try await runProcess(BrokerProcess.binary, ["audit", "--topology", topology, "--flow", "us-to-eu"], timeout: 120)
        #expect(audit.status == 0 && audit.stdout.contains("exact: "), "\(audit.stdout)\(audit.stderr)")
        let all = Int(audit.stdout.components(separatedBy: "exact: ").last?.prefix { $0.isNumber } ?? "") ?? 0
        // Only what the source got since the stop, one topic: fewer records, still exact.
        let since = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(stoppedAt) / 1000))
        let recent = try await runProcess(BrokerProcess.binary, ["audit", "--topology", topology, "--flow", "us-to-eu", "--topic", "orders",
                                                                 "--from", since, "--format", "json"], timeout: 120)
        let recentJSON = try JSONSerialization.jsonObject(with: Data(recent.stdout.utf8)) as? [String: Any]
        let checked = recentJSON?["checked"] as? Int ?? -1
        #expect(recent.status == 0 && recentJSON?["exact"] as? Bool == true && checked > 0 && checked < all,
                "--from \(since): \(checked) of \(all) records; \(recent.stdout)\(recent.stderr)")

        // A group reads 30 orders in the source; once the mirror synced its offsets, `--groups`
        // shows nothing a failover would lose or read twice.
        let read = try await runProcess(BrokerProcess.binary, ["consume", "-b", us.bootstrap, "-t", "orders", "-G", "billing", "-o", "beginning",
                                                               "-c", "30"], timeout: 60)
        #expect(read.status == 0, "\(read.stderr)")
        var groupRows: [[String: Any]] = []
        #expect(await eventually(60) {
            guard let r = try? await runProcess(BrokerProcess.binary, ["lag", "--topology", topology, "--groups", "--format", "json"], timeout: 60),
                  let o = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else { return false }
            groupRows = (o["groups"] as? [[String: Any]] ?? []).filter { $0["group"] as? String == "billing" }
            return groupRows.count == 2 && groupRows.allSatisfy { $0["rpoRecords"] as? Int == 0 && $0["reReads"] as? Int == 0 }
                && groupRows.map { $0["committed"] as? Int ?? 0 }.reduce(0, +) == 30
        }, "billing's RPO per partition: \(groupRows)")

        // --watch redraws in place until interrupted.
        let watching = try await runProcess(BrokerProcess.binary, ["lag", "--topology", topology, "--watch", "--interval", "0.3"], timeout: 6)
        #expect(watching.stdout.components(separatedBy: "\u{1B}[H\u{1B}[2J").count - 1 >= 2 && watching.stdout.contains("RECORDS BEHIND"),
                "\(watching.stdout.suffix(500))")

        let report = dir + "/report.html"
        let made = try await runProcess(BrokerProcess.binary, ["lag", "report", "--topology", topology, "--out", report], timeout: 60)
        #expect(made.status == 0, "\(made.stdout)\(made.stderr)")
        let html = try String(contentsOfFile: report, encoding: .utf8)
        #expect(html.components(separatedBy: "<svg class=\"chart\"").count - 1 == 4, "two flow charts and two worst-partition charts")
        #expect(html.contains("<polyline") && !html.contains("<script") && !html.contains("src=\"http"), "drawn inline, nothing loaded")
        let times = await historyTimes(second)
        #expect((times.first ?? .max) < stoppedAt, "the restarted mirror kept the points from before it stopped (history file): \(times.prefix(3)), file starts \(((try? String(contentsOfFile: dir + "/history.jsonl", encoding: .utf8)) ?? "").prefix(300))")

        // A real browser renders the page: the chart lines are on screen and nothing complains.
        let shot = dir + "/report.png"
        let browser = try await runProcess(try ExternalTools.require(ExternalTools.chromium, "chromium"), [
            "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,1600",
            "--enable-logging=stderr", "--v=0", "--screenshot=\(shot)", "file://\(report)"], timeout: 90)
        #expect(FileManager.default.fileExists(atPath: shot), "\(browser.stderr.suffix(2_000))")
        #expect(!browser.stderr.contains(":CONSOLE"), "no console message: \(browser.stderr.suffix(2_000))")
        let counted = try await runProcess(python, ["-c", Self.countColours, shot, "1f77b4", "d62728"])
        let counts = counted.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(counts.count == 2 && counts.allSatisfy { $0 > 150 }, "chart lines in the screenshot (pixels per colour): \(counted.stdout)\(counted.stderr)")
    }

    /// Counts the pixels of a PNG close to each given colour (standard library only: zlib and the
    /// PNG row filters), printing the counts separated by spaces.
    static let countColours = """
        import sys, zlib, struct
        data = open(sys.argv[1], "rb").read()
        assert data[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
        pos, idat = 8, b""
        while pos < len(data):
            n, kind = struct.unpack(">I4s", data[pos:pos + 8])
            chunk = data[pos + 8:pos + 8 + n]
            if kind == b"IHDR":
                w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            elif kind == b"IDAT":
                idat += chunk
            pos += 12 + n
        assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
        bpp = 3 if ctype == 2 else 4
        raw = zlib.decompress(idat)
        stride = w * bpp
        prev = bytearray(stride)
        rows = []
        for y in range(h):
            f = raw[y * (stride + 1)]
            line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                if f == 1: line[i] = (line[i] + a) & 255
                elif f == 2: line[i] = (line[i] + b) & 255
                elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
                elif f == 4:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            rows.append(line)
            prev = line
        out = []
        for hexcolour in sys.argv[2:]:
            want = bytes.fromhex(hexcolour)
            n = 0
            for line in rows:
                for x in range(0, stride, bpp):
                    if abs(line[x] - want[0]) < 40 and abs(line[x + 1] - want[1]) < 40 and abs(line[x + 2] - want[2]) < 40:
                        n += 1
            out.append(str(n))
        print(" ".join(out))
        """
}
