import Foundation
import Testing
import TestSupport

/// Consumer groups and compaction with real clients against a broker process.
@Suite("Consumer groups", .timeLimit(.minutes(5)))
struct GroupTests {
    static let fastGroups = ["--group-initial-rebalance-delay-ms", "1500", "--group-min-session-timeout-ms", "1000",
                             "--offsets-topic-partitions", "5"]

    func runScript(_ name: String, _ args: [String], timeout: Double = 180) async throws -> [String: Any] {
        let python = try ExternalTools.require(ExternalTools.python, "python venv with confluent-kafka and kafka-python")
        let script = ExternalTools.packageRoot.appendingPathComponent("Tests/ConformanceTests/python/\(name)").path
        let r = try await runProcess(python, [script] + args, timeout: timeout)
        guard r.status == 0, let line = r.stdout.split(separator: "\n").last,
              let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw BrokerFailed(message: "\(name) failed (status \(r.status)):\n\(r.stdout)\n\(r.stderr)")
        }
        return obj
    }

    func kcat(_ args: [String], input: String? = nil, timeout: Double = 60) async throws -> ProcessResult {
        try await runProcess(try ExternalTools.require(ExternalTools.kcat, "kcat"), args, input: input.map { Data($0.utf8) }, timeout: timeout)
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.python)))
    func threeConsumersShareAQueueExactlyOnceAcrossARebalance() async throws {
        let broker = try await BrokerProcess(arguments: Self.fastGroups)
        defer { broker.terminate(); broker.removeData() }
        let r = try await runScript("ck_group_queue.py", [broker.bootstrap, "queue-topic", "queue-group"])
        #expect(r["distinct"] as? Int == 30_000, "every record consumed; missing e.g. \(r["missing"] ?? "")")
        #expect(r["duplicates"] as? Int == 0, "no record consumed twice")
        let initial = r["initial"] as? [String: [Int]] ?? [:]
        #expect(initial.count == 3 && initial.values.allSatisfy { $0.count == 2 }, "6 partitions split 2/2/2: \(initial)")
        #expect(Set(initial.values.flatMap { $0 }) == Set(0..<6))
        let final = r["final"] as? [String: [Int]] ?? [:]
        #expect(final["c0"] == [], "the consumer that left has nothing")
        #expect(Set((final["c1"] ?? []) + (final["c2"] ?? [])) == Set(0..<6), "the other two took over: \(final)")
        let byConsumer = r["by_consumer"] as? [String: Int] ?? [:]
        #expect(byConsumer.count == 3 && byConsumer.values.allSatisfy { $0 > 0 }, "\(byConsumer)")
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.python) && ExternalTools.shouldRun(ExternalTools.kcat)))
    func twoGroupsEachGetEveryRecord() async throws {
        let broker = try await BrokerProcess(arguments: Self.fastGroups + ["--default-partitions", "6"])
        defer { broker.terminate(); broker.removeData() }
        let lines = (0..<30_000).map { "k\($0 % 500):v\($0)" }.joined(separator: "\n") + "\n"
        #expect(try await kcat(["-b", broker.bootstrap, "-P", "-t", "broadcast", "-K:"], input: lines).status == 0)
        let r = try await runScript("ck_group_broadcast.py", [broker.bootstrap, "broadcast", "30000"])
        #expect(r["broadcast-a"] as? Int == 30_000)
        #expect(r["broadcast-b"] as? Int == 30_000)
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func kcatBalancedConsumersSplitAndResume() async throws {
        let broker = try await BrokerProcess(arguments: Self.fastGroups + ["--default-partitions", "4"])
        defer { broker.terminate(); broker.removeData() }
        let kcat = try ExternalTools.require(ExternalTools.kcat, "kcat")
        let lines = (0..<4_000).map { "k\($0 % 40):v\($0)" }.joined(separator: "\n") + "\n"
        let produced = try await self.kcat(["-b", broker.bootstrap, "-P", "-t", "kg", "-K:"], input: lines)
        #expect(produced.status == 0, "\(produced.stderr)\nbroker log:\n\(broker.tailOfLog())")
        // Two kcat -G members at once: each gets part of the partitions, together everything once.
        let outputs = [broker.dataDir + ".kcat0", broker.dataDir + ".kcat1"]
        var procs: [SpawnedProcess] = []
        for out in outputs {
            procs.append(try SpawnedProcess(kcat, ["-b", broker.bootstrap, "-G", "kcat-group", "kg", "-q", "-u", "-f", "%p %s\\n",
                                                  "-X", "auto.offset.reset=earliest", "-X", "enable.auto.commit=true",
                                                  "-X", "auto.commit.interval.ms=100"], stdoutPath: out))
        }
        let deadline = Date().addingTimeInterval(60)
        func readLines(_ path: String) -> [String] { ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
        while Date() < deadline && outputs.map({ readLines($0).count }).reduce(0, +) < 4_000 { try await Task.sleep(for: .microseconds(100_000)) }
        try await Task.sleep(for: .microseconds(500_000))
        for p in procs { p.stop() }  // SIGTERM: kcat commits and leaves the group
        let got = outputs.map(readLines)
        defer { for o in outputs { try? FileManager.default.removeItem(atPath: o) } }
        #expect(got.map(\.count).reduce(0, +) == 4_000, "\(got.map(\.count))")
        #expect(Set(got.flatMap { $0 }).count == 4_000, "no record twice")
        let partitions = got.map { Set($0.map { $0.split(separator: " ")[0] }) }
        #expect(partitions.allSatisfy { $0.count == 2 } && partitions[0].isDisjoint(with: partitions[1]), "\(partitions)")
        // The group resumes at its commits: nothing old is read again.
        #expect(try await self.kcat(["-b", broker.bootstrap, "-P", "-t", "kg", "-p", "3"], input: "fresh\n").status == 0)
        let resumed = try await self.kcat(["-b", broker.bootstrap, "-G", "kcat-group", "kg", "-e", "-q"], timeout: 60)
        #expect(resumed.stdout == "fresh\n", "\(resumed.stdout.prefix(200))")
        // Another group gets everything (broadcast).
        let other = try await self.kcat(["-b", broker.bootstrap, "-G", "kcat-other", "kg", "-e", "-q", "-X", "auto.offset.reset=earliest"], timeout: 60)
        #expect(other.stdout.split(separator: "\n").count == 4_001)
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.python)))
    func kafkaPythonGroupConsumers() async throws {
        let broker = try await BrokerProcess(arguments: Self.fastGroups)
        defer { broker.terminate(); broker.removeData() }
        let r = try await runScript("kp_group.py", [broker.bootstrap, "kp-group-topic", "2000"])
        #expect(r["queue_distinct"] as? Int == 2000)
        #expect(r["queue_dups"] as? Int == 0)
        let parts = r["partitions"] as? [String: [Int]] ?? [:]
        #expect(Set((parts["q0"] ?? []) + (parts["q1"] ?? [])) == Set(0..<4))
        #expect((parts["q0"] ?? []).count == 2 && (parts["q1"] ?? []).count == 2, "\(parts)")
        #expect(r["broadcast_distinct"] as? Int == 2000)
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.python) && ExternalTools.shouldRun(ExternalTools.kcat)))
    func commitsSurviveKillDashNine() async throws {
        let broker = try await BrokerProcess(arguments: Self.fastGroups + ["--default-partitions", "3"])
        defer { broker.terminate(); broker.removeData() }
        let lines = (0..<3_000).map { "v\($0)" }.joined(separator: "\n") + "\n"
        #expect(try await kcat(["-b", broker.bootstrap, "-P", "-t", "resume"], input: lines).status == 0)
        let first = try await runScript("ck_commit_then_resume.py", [broker.bootstrap, "resume", "resumers", "first", "1000"])
        #expect(first["consumed"] as? Int == 1000)
        let committed = first["committed"] as? [String: Int] ?? [:]
        #expect(committed.values.reduce(0, +) == 1000)
        broker.kill9()
        try await broker.start()
        let second = try await runScript("ck_commit_then_resume.py", [broker.bootstrap, "resume", "resumers", "second", "2000"])
        #expect(second["consumed"] as? Int == 2000)
        let before = Set(first["values"] as? [String] ?? [])
        let after = Set(second["values"] as? [String] ?? [])
        #expect(before.isDisjoint(with: after), "no re-read beyond the last commit")
        #expect(before.union(after) == Set((0..<3_000).map { "v\($0)" }), "nothing skipped")
        let firstSeen = second["first"] as? [String: Int] ?? [:]
        for (p, f) in firstSeen {
            #expect(f == committed[p] ?? 0, "partition \(p) resumes exactly at its commit")
        }
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.python) && ExternalTools.shouldRun(ExternalTools.kcat)))
    func confluentAdminGroupOperations() async throws {
        let broker = try await BrokerProcess(arguments: Self.fastGroups + ["--default-partitions", "2"])
        defer { broker.terminate(); broker.removeData() }
        let lines = (0..<200).map { "a\($0)" }.joined(separator: "\n") + "\n"
        #expect(try await kcat(["-b", broker.bootstrap, "-P", "-t", "admin-groups"], input: lines).status == 0)
        let r = try await runScript("ck_admin_groups.py", [broker.bootstrap, "admin-groups", "admin-g"])
        #expect(r["consumed"] as? Int == 100 || (r["consumed"] as? Int ?? 0) >= 100)
        #expect((r["listed"] as? [String])?.contains("admin-g") == true)
        let d = r["describe"] as? [String: Any] ?? [:]
        #expect((d["state"] as? String)?.contains("STABLE") == true, "\(d)")
        #expect(d["members"] as? Int == 1)
        #expect(d["assigned"] as? [Int] == [0, 1])
        #expect(r["delete_active_error"] as? String == "NON_EMPTY_GROUP")
        let before = r["offsets_before"] as? [String: Int] ?? [:]
        #expect(before.values.reduce(0, +) >= 100)
        #expect((r["offsets_after"] as? [String: Int])?["0"] == 7)
        #expect((r["listed_after_delete"] as? [String])?.contains("admin-g") == false)
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.python) && ExternalTools.shouldRun(ExternalTools.kcat)))
    func silentMemberIsExpiredAndItsPartitionsMove() async throws {
        let python = try ExternalTools.require(ExternalTools.python, "python venv")
        let broker = try await BrokerProcess(arguments: Self.fastGroups + ["--default-partitions", "4"])
        defer { broker.terminate(); broker.removeData() }
        #expect(try await kcat(["-b", broker.bootstrap, "-P", "-t", "expiry"], input: "x\n").status == 0)
        let script = ExternalTools.packageRoot.appendingPathComponent("Tests/ConformanceTests/python/ck_member.py").path
        var outs: [String] = []
        var procs: [ChildProcess] = []
        for i in 0..<2 {
            let out = broker.dataDir + ".member\(i)"
            _ = FileManager.default.createFile(atPath: out, contents: nil)
            outs.append(out)
            let p = ChildProcess(python, [script, broker.bootstrap, "expiry", "expiry-group", "60"])
            p.standardOutput = .file(out)
            p.standardError = .null
            try p.run()
            procs.append(p)
        }
        defer { for p in procs { p.signal(SIGKILL) }; for o in outs { try? FileManager.default.removeItem(atPath: o) } }
        func changes(_ i: Int) -> [(assigned: [Int], at: Double)] {
            ((try? String(contentsOfFile: outs[i], encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
                guard let line = try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any],
                      let assigned = line["assigned"] as? [Int], let at = line["t"] as? Double else { return nil }
                return (assigned, at)
            }
        }
        func assignments(_ i: Int) -> [[Int]] { changes(i).map(\.assigned) }
        var deadline = Date().addingTimeInterval(40)
        while Date() < deadline && !(assignments(0).last?.count == 2 && assignments(1).last?.count == 2) { try await Task.sleep(for: .microseconds(100_000)) }
        #expect(assignments(0).last?.count == 2 && assignments(1).last?.count == 2, "split 2/2 first: \(assignments(0)) \(assignments(1))")
        // Member 0 dies without leaving: no more heartbeats. The time is taken before the kill, and the
        // survivor's new assignment is timed by the member itself, so a slow wait here cannot shift either.
        let killedAt = Date().timeIntervalSince1970
        procs[0].signal(SIGKILL)
        deadline = Date().addingTimeInterval(40)
        while Date() < deadline && assignments(1).last != [0, 1, 2, 3] { try await Task.sleep(for: .microseconds(100_000)) }
        #expect(assignments(1).last == [0, 1, 2, 3], "the survivor took every partition: \(assignments(1))")
        let tookAll = changes(1).last.map { $0.at - killedAt } ?? 0
        #expect(tookAll > 2.5, "not before the 3 s session timeout: \(tookAll) s after the kill")
        #expect(broker.tailOfLog(lines: 200).contains("members expired after their session timeout"))
    }

    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat) && ExternalTools.shouldRun(ExternalTools.python)))
    func compactedTopicKeepsLatestValuePerKey() async throws {
        let broker = try await BrokerProcess(arguments: ["--log-cleaner-backoff-ms", "200", "--retention-check-interval-ms", "200"])
        defer { broker.terminate(); broker.removeData() }
        // kcat cannot create topics with configs; the confluent-kafka admin can.
        let python = try ExternalTools.require(ExternalTools.python, "python venv")
        do {
            let code = """
                from confluent_kafka.admin import AdminClient, NewTopic
                a = AdminClient({'bootstrap.servers': '\(broker.bootstrap)'})
                a.create_topics([NewTopic('compacted', 1, 1, config={'cleanup.policy': 'compact', 'segment.bytes': '4096',
                    'min.cleanable.dirty.ratio': '0.01', 'delete.retention.ms': '100',
                    'min.compaction.lag.ms': '3600000'})])['compacted'].result(10)
                """
            #expect(try await runProcess(python, ["-c", code]).status == 0)
        }
        var lines: [String] = []
        for round in 0..<40 { for k in 0..<20 { lines.append("key\(k):round\(round)") } }
        let produced = try await kcat(["-b", broker.bootstrap, "-P", "-t", "compacted", "-K:", "-X", "batch.num.messages=20"],
                                      input: lines.joined(separator: "\n") + "\n")
        #expect(produced.status == 0)
        // A tombstone for key0, then more data so everything above sits in closed segments.
        #expect(try await kcat(["-b", broker.bootstrap, "-P", "-t", "compacted", "-K:", "-Z"], input: "key0:\n").status == 0)
        let filler = (0..<200).map { "filler\($0):x" }.joined(separator: "\n") + "\n"
        #expect(try await kcat(["-b", broker.bootstrap, "-P", "-t", "compacted", "-K:"], input: filler).status == 0)
        let before = try await kcat(["-b", broker.bootstrap, "-C", "-t", "compacted", "-o", "beginning", "-e", "-q", "-f", "%o %k %s\\n"])
        let beforeRows = before.stdout.split(separator: "\n").map(String.init)
        #expect(beforeRows.count == 1_001)
        var originalOffset: [String: String] = [:]
        var latestValue: [String: String] = [:]
        var rounds: [String: [Int]] = [:]
        for row in beforeRows {
            let f = row.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            if f[1].hasPrefix("key") {
                originalOffset[f[1]] = f[0]
                latestValue[f[1]] = f[2]
                if let r = Int(f[2].dropFirst("round".count)) { rounds[f[1], default: []].append(r) }
            }
        }
        // kcat wrote the rounds in order; a log that holds them in another order would make the
        // compaction check below look at the wrong "latest" value. Say what kcat and the broker
        // reported if that ever happens (one fresh-clone run saw every key end with round36).
        let outOfOrder = rounds.filter { $0.value != $0.value.sorted() }.keys.sorted()
        #expect(outOfOrder.isEmpty, """
            the log holds rounds out of order for \(outOfOrder): \(rounds[outOfOrder.first ?? ""] ?? [])
            kcat stderr: \(produced.stderr)
            broker log: \(broker.tailOfLog(lines: 60))
            """)
        // Only now may the cleaner touch the topic (min.compaction.lag.ms held it off until the
        // "before" view was read, however fast it runs).
        do {
            let code = """
                from confluent_kafka.admin import AdminClient, ConfigResource, ConfigEntry, AlterConfigOpType
                a = AdminClient({'bootstrap.servers': '\(broker.bootstrap)'})
                r = ConfigResource('topic', 'compacted', incremental_configs=[
                    ConfigEntry('min.compaction.lag.ms', '0', incremental_operation=AlterConfigOpType.SET)])
                for f in a.incremental_alter_configs([r]).values(): f.result(10)
                """
            let r = try await runProcess(python, ["-c", code])
            #expect(r.status == 0, "\(r.stderr)")
        }
        var after: [String] = []
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let c = try await kcat(["-b", broker.bootstrap, "-C", "-t", "compacted", "-o", "beginning", "-e", "-q", "-f", "%o %k %s\\n"])
            after = c.stdout.split(separator: "\n").map(String.init)
            if after.filter({ $0.contains(" key") }).count <= 20 { break }
            try await Task.sleep(for: .microseconds(200_000))
        }
        let keyed = after.filter { $0.split(separator: " ").count >= 2 && $0.split(separator: " ")[1].hasPrefix("key") }
        let keys = keyed.map { String($0.split(separator: " ")[1]) }
        #expect(Set(keys).count == keys.count, "one record per key: \(keys.count) records for \(Set(keys).count) keys")
        for row in keyed {
            let f = row.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            #expect(originalOffset[f[1]] == f[0], "\(f[1]) keeps its offset")
            if f[1] != "key0" { #expect(f[2] == latestValue[f[1]], "\(f[1]) shows its latest value") }
        }
        #expect(broker.tailOfLog(lines: 100).contains("compacted log"))
        #expect(after.last?.hasSuffix("filler199 x") == true, "the consumer view ends with the newest record")
    }
}

/// `meridian groups` against a broker with a group committed by kcat.
@Suite("meridian groups", .timeLimit(.minutes(5)))
struct GroupsCommandTests {
    @Test(.enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)))
    func listDescribeResetDelete() async throws {
        let kcat = try ExternalTools.require(ExternalTools.kcat, "kcat")
        let broker = try await BrokerProcess(arguments: GroupTests.fastGroups + ["--default-partitions", "2"])
        defer { broker.terminate(); broker.removeData() }
        let start = Int64(Date().timeIntervalSince1970 * 1000)
        let lines = (0..<100).map { "k\($0 % 10):v\($0)" }.joined(separator: "\n") + "\n"
        #expect(try await runProcess(kcat, ["-b", broker.bootstrap, "-P", "-t", "cli", "-K:"], input: Data(lines.utf8)).status == 0)
        let c = try await runProcess(kcat, ["-b", broker.bootstrap, "-G", "cli-group", "cli", "-e", "-q", "-X", "auto.offset.reset=earliest"])
        #expect(c.stdout.split(separator: "\n").count == 100)
        let m = BrokerProcess.binary
        func meridian(_ args: [String]) async throws -> ProcessResult { try await runProcess(m, args + ["--bootstrap", broker.bootstrap]) }

        let list = try await meridian(["groups", "list"])
        #expect(list.status == 0 && list.stdout.contains("cli-group") && list.stdout.contains("Empty"), "\(list.stdout)\(list.stderr)")
        let describe = try await meridian(["groups", "describe", "cli-group", "--json"])
        let rows = describe.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let partitions = rows.filter { $0["partition"] != nil }
        #expect(partitions.count == 2)
        #expect(partitions.map { $0["currentOffset"] as? Int ?? -1 }.reduce(0, +) == 100)
        #expect(partitions.allSatisfy { $0["lag"] as? Int == 0 })
        let table = try await meridian(["groups", "describe", "cli-group"])
        #expect(table.stdout.contains("LOG-END-OFFSET") && table.stdout.contains("LAG"))

        // Dry run changes nothing; --execute does.
        let dry = try await meridian(["groups", "reset-offsets", "cli-group", "--topic", "cli", "--to-earliest"])
        #expect(dry.stdout.contains("dry run"))
        #expect(try await meridian(["groups", "describe", "cli-group", "--json"]).stdout.contains("\"lag\":0"))
        let reset = try await meridian(["groups", "reset-offsets", "cli-group", "--topic", "cli:0", "--to-offset", "3", "--execute"])
        #expect(reset.status == 0, "\(reset.stderr)")
        let again = try await runProcess(kcat, ["-b", broker.bootstrap, "-G", "cli-group", "cli", "-e", "-q", "-f", "%p %o\\n"])
        let reread = again.stdout.split(separator: "\n").filter { $0.hasPrefix("0 ") }
        #expect(reread.first == "0 3", "partition 0 re-read from offset 3")
        let byTime = try await meridian(["groups", "reset-offsets", "cli-group", "--topic", "cli",
                                   "--to-datetime", ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(start - 60_000) / 1000)), "--execute"])
        #expect(byTime.status == 0 && byTime.stdout.split(separator: "\n").dropFirst().prefix(2).allSatisfy { $0.hasSuffix(" 0") },
                "records produced after the time start at offset 0: \(byTime.stdout)")

        let delete = try await meridian(["groups", "delete", "cli-group"])
        #expect(delete.status == 0)
        #expect(!(try await meridian(["groups", "list"]).stdout.contains("cli-group")))
        let missing = try await meridian(["groups", "delete", "cli-group"])
        #expect(missing.status != 0 && missing.stderr.contains("GROUP_ID_NOT_FOUND"))
    }
}
