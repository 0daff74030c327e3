import Foundation
import Testing
import TestSupport

/// A command whose cluster cannot be reached says so within seconds (which address, why, that it
/// keeps trying and for how long), then gives up with an error after its --timeout. It used to print
/// nothing for 30 s (`topics list`) or a minute (`produce`).
@Suite("Commands against a cluster that is not there", .timeLimit(.minutes(3)))
struct UnreachableClusterTests {
    struct Run {
        var firstReport: Duration?
        var total: Duration
        var status: Int32
        var stderr: String
    }

    /// Runs `meridian args`, noting when standard error first says the broker cannot be reached and
    /// when the command ended. The noting is done by a thread of its own: the test pool's two
    /// threads may be held by other tests for seconds (CI: 3.4 s to the first report and 15 s to
    /// the end measured on the pool, 0.05 s and 4 s by the command), and a watcher on them would
    /// measure that, not the command.
    func run(_ args: [String], input: String = "") async throws -> Run {
        let dir = NSTemporaryDirectory() + "unreachable-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try input.write(toFile: dir + "/in", atomically: true, encoding: .utf8)
        let p = ChildProcess(BrokerProcess.binary, args)
        p.standardInput = .file(dir + "/in")
        p.standardOutput = .null
        p.standardError = .file(dir + "/err")
        let first = Stamp(), ended = Stamp()
        let started = ContinuousClock.now
        try p.run()
        let watcher = Thread {
            while ContinuousClock.now - started < .seconds(60) {
                if first.value == nil, ((try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? "").contains("cannot connect to") {
                    first.set(ContinuousClock.now - started)
                }
                if !p.isRunning {
                    ended.set(ContinuousClock.now - started)
                    if first.value == nil, ((try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? "").contains("cannot connect to") {
                        first.set(ContinuousClock.now - started)
                    }
                    return
                }
                usleep(10_000)
            }
        }
        watcher.start()
        _ = await eventually(70) { watcher.isFinished }
        p.signal(SIGKILL)
        await p.wait()
        let err = (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? ""
        return Run(firstReport: first.value, total: ended.value ?? ContinuousClock.now - started, status: p.terminationStatus, stderr: err)
    }

    /// A time noted once, by the watcher thread.
    final class Stamp: @unchecked Sendable {
        private let lock = NSLock()
        private var seen: Duration?
        var value: Duration? { lock.withLock { seen } }
        func set(_ d: Duration) { lock.withLock { if seen == nil { seen = d } } }
    }

    @Test func everyClientCommandReportsAClosedPortAtOnceAndGivesUpAfterItsTimeout() async throws {
        let closed = "127.0.0.1:\(try LocalPort.free())"
        let commands: [(String, [String], String)] = [
            ("topics list", ["topics", "list", "-b", closed, "--timeout", "4"], ""),
            ("produce", ["produce", "-b", closed, "-t", "orders", "--timeout", "4"], "a\nb\n"),
            ("consume", ["consume", "-b", closed, "-t", "orders", "-o", "beginning", "-e", "--timeout", "4"], ""),
            ("consume -G", ["consume", "-b", closed, "-t", "orders", "-G", "g", "-m", "4"], ""),
            ("groups list", ["groups", "list", "-b", closed, "-m", "4"], ""),
        ]
        // One after the other: five processes starting at once on a busy machine would measure
        // the machine.
        for (name, args, input) in commands {
            let r = try await run(args, input: input)
            do {
                let first = try #require(r.firstReport, "\(name) never said it cannot connect: \(r.stderr)")
                #expect(first < .seconds(3), "\(name) reported after \(first)")
                #expect(r.stderr.contains("cannot connect to \(closed): Connection refused; still trying for"), "\(name): \(r.stderr)")
                #expect(r.stderr.contains("--timeout sets how long"), "\(name): \(r.stderr)")
                #expect(r.status != 0, "\(name) exits with an error")
                #expect(r.total < .seconds(12), "\(name) gives up after --timeout 4: \(r.total)")
            }
        }
    }

    @Test func topologyCommandsReportAnUnreachableRegion() async throws {
        let dir = NSTemporaryDirectory() + "unreachable-topo-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = "127.0.0.1:\(try LocalPort.free())", b = "127.0.0.1:\(try LocalPort.free())"
        try """
            {"version": 1, "regions": [{"name": "us", "bootstrap": ["\(a)"]}, {"name": "eu", "bootstrap": ["\(b)"]}],
             "flows": [{"name": "us-to-eu", "source": "us", "target": "eu", "topics": {"include": ["orders"]}}]}
            """.write(toFile: dir + "/topology.json", atomically: true, encoding: .utf8)
        let audit = try await run(["audit", "--topology", dir + "/topology.json", "--flow", "us-to-eu", "--timeout", "4"])
        let first = try #require(audit.firstReport, "\(audit.stderr)")
        #expect(first < .seconds(3) && audit.status != 0, "\(audit.stderr)")
        let lag = try await run(["lag", "--topology", dir + "/topology.json", "--from-clusters", "--timeout", "3"])
        #expect(lag.firstReport.map { $0 < .seconds(3) } == true && lag.status != 0, "\(lag.stderr)")
        // The mirror, a daemon, keeps trying, and logs which broker it cannot reach within seconds:
        // here the source, with the target up.
        let eu = try await BrokerProcess()
        defer { eu.terminate(); eu.removeData() }
        try """
            {"version": 1, "regions": [{"name": "us", "bootstrap": ["\(a)"]}, {"name": "eu", "bootstrap": ["\(eu.bootstrap)"]}],
             "flows": [{"name": "us-to-eu", "source": "us", "target": "eu", "topics": {"include": ["orders"]}}]}
            """.write(toFile: dir + "/topology.json", atomically: true, encoding: .utf8)
        let mirror = ChildProcess(BrokerProcess.binary, ["mirror", "--topology", dir + "/topology.json", "--region", "eu", "--metrics", "127.0.0.1:0"])
        mirror.standardOutput = .null
        mirror.standardError = .file(dir + "/mirror.log")
        let logged = Stamp()
        let started = ContinuousClock.now
        try mirror.run()
        defer { mirror.signal(SIGKILL) }
        // Timed by a thread of its own, as in run(_:input:).
        let watcher = Thread {
            while ContinuousClock.now - started < .seconds(30) && mirror.isRunning {
                let log = (try? String(contentsOfFile: dir + "/mirror.log", encoding: .utf8)) ?? ""
                if log.contains("cannot connect to a source broker; retrying") && log.contains("broker=\(a)") {
                    logged.set(ContinuousClock.now - started)
                    return
                }
                usleep(10_000)
            }
        }
        watcher.start()
        _ = await eventually(40) { watcher.isFinished }
        let log = (try? String(contentsOfFile: dir + "/mirror.log", encoding: .utf8)) ?? ""
        #expect(logged.value.map { $0 < .seconds(5) } == true, "logged after \(logged.value.map { "\($0)" } ?? "never"): \(log)")
        #expect(mirror.isRunning, "it keeps trying")
    }
}
