import Foundation
import Spawn
import Testing

/// Child processes start reliably, with clean signals and descriptors, and report how they ended.
@Suite("Child processes", .timeLimit(.minutes(2)))
struct ChildProcessTests {
    func output(_ args: [String], _ configure: (ChildProcess) -> Void = { _ in }) async throws -> (ChildProcess.Termination?, String) {
        let out = NSTemporaryDirectory() + "spawn-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let p = ChildProcess("/bin/sh", ["-c"] + args)
        p.standardOutput = .file(out)
        configure(p)
        try p.run()
        #expect(await p.wait(timeout: .seconds(30)))
        return (p.terminated, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    @Test func exitStatusAndSignalAreReported() async throws {
        #expect(try await output(["exit 3"]).0 == .exit(3))
        #expect(try await output(["kill -TERM $$"]).0 == .signal(SIGTERM))
        let (end, text) = try await output(["echo hello; echo oops >&2"]) { $0.standardError = .standardOutput }
        #expect(end == .exit(0))
        #expect(text == "hello\noops\n", "standard error joined to standard output")
    }

    @Test func aMissingExecutableIsAnErrorNotAChild() throws {
        let p = ChildProcess("/nonexistent/meridian-\(UUID().uuidString.prefix(6))")
        #expect(throws: SpawnError.self) { try p.run() }
        #expect(!p.isRunning)
    }

    @Test func theChildStartsWithDefaultSignalsAndNoBlockedOnes() async throws {
        // The test runner blocks SIGTERM on its threads; a child started the way Foundation starts
        // one inherited that mask and ignored SIGTERM.
        var block = sigset_t()
        sigemptyset(&block)
        sigaddset(&block, SIGTERM)
        var old = sigset_t()
        pthread_sigmask(SIG_BLOCK, &block, &old)
        defer { pthread_sigmask(SIG_SETMASK, &old, nil) }
        let (_, text) = try await output(["grep -E '^Sig(Blk|Ign)' /proc/self/status"])
        #expect(text.contains("SigBlk:\t0000000000000000"), "\(text)")
        #expect(text.contains("SigIgn:\t0000000000000000"), "\(text)")
    }

    @Test func onlyTheStandardDescriptorsReachTheChild() async throws {
        // A descriptor the test holds open without close-on-exec must not live on in the child.
        let held = open("/dev/null", O_RDONLY)
        defer { close(held) }
        let (_, text) = try await output(["ls /proc/self/fd"])
        let fds = Set(text.split(separator: "\n").compactMap { Int32($0) })
        #expect(!fds.contains(held), "\(fds.sorted())")
        #expect(fds.isSuperset(of: [0, 1, 2]))
    }

    @Test func manyChildrenAtOnceWithThousandsOfDescriptorsOpen() async throws {
        // Foundation's Process.run crashed reading /proc/self/fd when many descriptors were open
        // and tests launched children in parallel; this start reads no directory.
        var held: [Int32] = []
        for _ in 0..<2_000 { held.append(open("/dev/null", O_RDONLY | O_CLOEXEC)) }
        defer { for fd in held { close(fd) } }
        let ok = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<100 {
                group.addTask {
                    let p = ChildProcess("/bin/sh", ["-c", "exit \(i % 7)"])
                    try p.run()
                    await p.wait()
                    return p.terminated == .exit(Int32(i % 7))
                }
            }
            return try await group.reduce(true) { $0 && $1 }
        }
        #expect(ok)
    }

    @Test func stopSendsTermThenKill() async throws {
        let p = ChildProcess("/bin/sh", ["-c", "trap '' TERM; sleep 30"])
        try p.run()
        // Wait until the shell has set its trap (it is running sleep), then stop with a short grace.
        try await Task.sleep(for: .milliseconds(200))
        let end = await p.stop(grace: .milliseconds(300))
        #expect(end == .signal(SIGKILL))
    }
}
