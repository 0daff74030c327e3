import Foundation

/// A `meridian broker` child process for tests.
///
/// Starts the broker on ephemeral ports, waits for its `ready` line and exposes the listeners it
/// reports. The data directory survives ``kill9()`` / ``terminate()`` so a test can ``restart()``
/// on the same data. Standard error goes to `<dataDir>.log` for post-mortems.
public final class BrokerProcess: @unchecked Sendable {
    public let dataDir: String
    public let extraArguments: [String]
    public let listenerSpecs: [String]
    public private(set) var listeners: [String] = []
    private var process: ChildProcess?
    public var logPath: String { dataDir + ".log" }

    /// The binary under test: `MERIDIAN_BIN`, else `meridian` next to the test bundle.
    public static var binary: String {
        if let b = ProcessInfo.processInfo.environment["MERIDIAN_BIN"] { return b }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // On Linux the tests run from <build>/<package>PackageTests.xctest; macOS nests deeper.
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("meridian").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        return ExternalTools.packageRoot.appendingPathComponent(".build/debug/meridian").path
    }

    /// Starts the broker and waits (suspended, not blocking a thread) until it is ready.
    public init(listeners: [String] = ["PLAINTEXT://127.0.0.1:0"], arguments: [String] = [], dataDir: String? = nil) async throws {
        self.dataDir = dataDir ?? (NSTemporaryDirectory() + "meridian-test-\(UUID().uuidString.prefix(8))")
        self.extraArguments = arguments
        self.listenerSpecs = listeners
        try await start()
    }

    deinit {
        if let p = process, p.isRunning { p.signal(SIGKILL); p.waitUntilExit() }
    }

    public var pid: Int32 { process?.processIdentifier ?? -1 }

    /// `host:port` of the first PLAINTEXT listener (or the first listener).
    public var bootstrap: String {
        let l = listeners.first { $0.hasPrefix("PLAINTEXT://") } ?? listeners[0]
        return String(l[l.range(of: "://")!.upperBound...])
    }

    public func address(of proto: String) -> String? {
        listeners.first { $0.hasPrefix(proto + "://") }.map { String($0[$0.range(of: "://")!.upperBound...]) }
    }

    public var port: Int { Int(bootstrap.split(separator: ":").last!)! }

    /// Starts the broker process and waits until it prints `ready`. Waiting suspends: tests run
    /// in parallel on a thread pool as wide as the machine (two threads here), and a start that
    /// blocked its thread for the seconds a loaded machine needs would stall every other test.
    public func start(reuseListeners: Bool = false) async throws {
        let specs = reuseListeners && !listeners.isEmpty ? listeners : listenerSpecs
        var args = ["broker", "--data-dir", dataDir]
        for l in specs { args += ["--listener", l] }
        let p = ChildProcess(Self.binary, args + extraArguments)
        let outPath = dataDir + ".out"
        p.standardOutput = .file(outPath)
        p.standardError = .file(logPath, append: true)
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: outPath, encoding: .utf8),
               let line = text.split(separator: "\n").first(where: { $0.hasPrefix("ready ") }) {
                listeners = line.dropFirst("ready ".count).split(separator: ",").map(String.init)
                return
            }
            if !p.isRunning {
                throw BrokerFailed(message: "broker exited with status \(p.terminationStatus) before it was ready:\n\(tailOfLog())")
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        p.signal(SIGKILL)
        throw BrokerFailed(message: "broker did not print 'ready' within 60 s:\n\(tailOfLog())")
    }

    public func tailOfLog(lines: Int = 30) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// SIGKILL: no flush, no clean-shutdown marker.
    public func kill9() {
        guard let p = process, p.isRunning else { return }
        p.signal(SIGKILL)
        p.waitUntilExit()
    }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    public func terminate(timeout: Double = 30) -> Int32 {
        guard let p = process else { return -1 }
        p.signal(SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { p.signal(SIGKILL); p.waitUntilExit(); return -9 }
        return p.terminationStatus
    }

    public func restart() async throws {
        kill9()
        try await start()
    }

    public var isRunning: Bool { process?.isRunning ?? false }

    /// Peak resident set size of the broker in KiB (VmHWM), read from /proc.
    public var peakRSSKiB: Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        }
        return nil
    }

    public func removeData() {
        try? FileManager.default.removeItem(atPath: dataDir)
        try? FileManager.default.removeItem(atPath: dataDir + ".out")
        try? FileManager.default.removeItem(atPath: logPath)
    }
}

public struct BrokerFailed: Error, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// Creates a throwaway CA with a broker certificate and a client certificate using deploy/make-certs.sh.
public func makeTestCertificates() async throws -> String {
    let dir = NSTemporaryDirectory() + "meridian-certs-\(UUID().uuidString.prefix(8))"
    let script = ExternalTools.packageRoot.appendingPathComponent("deploy/make-certs.sh").path
    let r = try await runProcess("/bin/bash", [script, "--out", dir, "broker"], timeout: 60)
    guard r.status == 0 else { throw BrokerFailed(message: "make-certs.sh failed: \(r.stderr)") }
    return dir
}
