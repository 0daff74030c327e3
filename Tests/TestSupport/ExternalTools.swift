import Foundation

/// Finds the real clients the conformance tests drive, and decides what happens when one is missing:
/// in CI (`CI` set) a missing tool fails the test loudly; on a developer machine the test is skipped
/// and says so.
public enum ExternalTools {
    public static var isCI: Bool {
        let v = ProcessInfo.processInfo.environment["CI"] ?? ""
        return !v.isEmpty && v != "0" && v.lowercased() != "false"
    }

    public static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    public static var kcat: String? { which("kcat") }
    public static var openssl: String? { which("openssl") }
    /// Headless Chromium (Debian's `chromium`), which renders the lag report in a test.
    public static var chromium: String? { which("chromium") ?? which("chromium-browser") }

    /// The Python interpreter of the test venv that has confluent-kafka and kafka-python.
    public static var python: String? {
        if let p = ProcessInfo.processInfo.environment["MERIDIAN_PYTHON"], FileManager.default.isExecutableFile(atPath: p) {
            return p
        }
        let p = packageRoot.appendingPathComponent(".venv/bin/python").path
        return FileManager.default.isExecutableFile(atPath: p) ? p : nil
    }

    /// Whether a test needing `tool` should run: always in CI (so a missing tool fails), otherwise
    /// only when the tool is present.
    public static func shouldRun(_ tool: String?) -> Bool {
        if tool != nil { return true }
        if !isCI { print("note: skipping a test whose external tool is missing (outside CI only; run .ci/run to install)") }
        return isCI
    }

    public struct Missing: Error, CustomStringConvertible {
        public var tool: String
        public var description: String {
            "\(tool) is not installed; .ci/run installs it (apt-get install -y kcat chromium; python venv in .venv with confluent-kafka and kafka-python)"
        }
    }

    public static func require(_ path: String?, _ name: String) throws -> String {
        guard let path else { throw Missing(tool: name) }
        return path
    }

    /// The package root (the directory holding Package.swift).
    public static var packageRoot: URL {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    }
}

/// Result of running a child process to completion.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs `executable` with `arguments`, feeding `input`, and waits up to `timeout` seconds
/// (the process is killed after that and the result says so). Waiting suspends rather than
/// blocks: tests run in parallel on a thread pool as wide as the machine has cores, and a test
/// that blocked a thread for the life of a child process would starve every other test.
public func runProcess(_ executable: String, _ arguments: [String], input: Data? = nil, timeout: Double = 120,
                       environment: [String: String]? = nil) async throws -> ProcessResult {
    let p = ChildProcess(executable, arguments)
    if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("proc-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let outURL = dir.appendingPathComponent("out"), errURL = dir.appendingPathComponent("err"), inURL = dir.appendingPathComponent("in")
    _ = FileManager.default.createFile(atPath: inURL.path, contents: input ?? Data())
    p.standardOutput = .file(outURL.path)
    p.standardError = .file(errURL.path)
    p.standardInput = .file(inURL.path)
    try p.run()
    let ended = await p.wait(timeout: .milliseconds(Int64(timeout * 1000)))
    if !ended {
        p.signal(SIGKILL)
        await p.wait()
    }
    // Lossy: a record value that is not UTF-8 must not blank out everything else a tool printed.
    let out = (try? Data(contentsOf: outURL)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    var err = (try? Data(contentsOf: errURL)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    if !ended { err += "\n[killed after \(timeout) s]" }
    return ProcessResult(status: ended ? p.terminationStatus : -9, stdout: out, stderr: err)
}

/// A blocking TCP socket connected to 127.0.0.1:`port` (non-blocking after connecting if asked),
/// or nil when the connection is refused. The caller closes it.
public func connectLoopback(port: Int, nonBlocking: Bool = false) -> Int32? {
    // Close-on-exec: a child process another test starts meanwhile must not inherit the socket and
    // keep the connection open after this test closes it.
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return nil }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let ok = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard ok == 0 else {
        close(fd)
        return nil
    }
    if nonBlocking { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    return fd
}

/// A child process for a test, started at once with its output in files: standard output to
/// `stdoutPath` (truncated), standard error appended to `stderrPath` (or discarded).
public final class SpawnedProcess: @unchecked Sendable {
    public let process: ChildProcess
    public var pid: pid_t { process.processIdentifier }

    public init(_ executable: String, _ arguments: [String], stdoutPath: String, stderrPath: String? = nil) throws {
        process = ChildProcess(executable, arguments)
        process.standardOutput = .file(stdoutPath)
        process.standardError = stderrPath.map { .file($0, append: true) } ?? .null
        try process.run()
    }

    public var isRunning: Bool { process.isRunning }

    /// Sends `signal` and waits up to `timeout` seconds; SIGKILL after that. Returns the exit status,
    /// or 128 + the signal that ended the child.
    @discardableResult
    public func stop(_ signal: Int32 = SIGTERM, timeout: Double = 20) -> Int32 {
        process.signal(signal)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            process.signal(SIGKILL)
            process.waitUntilExit()
        }
        switch process.terminated {
        case .exit(let code)?: return code
        case .signal(let s)?: return 128 + s
        case nil: return -1
        }
    }
}
