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
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("proc-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let outURL = dir.appendingPathComponent("out"), errURL = dir.appendingPathComponent("err"), inURL = dir.appendingPathComponent("in")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: inURL.path, contents: input ?? Data())
    p.standardOutput = try FileHandle(forWritingTo: outURL)
    p.standardError = try FileHandle(forWritingTo: errURL)
    p.standardInput = try FileHandle(forReadingFrom: inURL)
    try launch(p)
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
    var timedOut = false
    if p.isRunning {
        timedOut = true
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }
    // Lossy: a record value that is not UTF-8 must not blank out everything else a tool printed.
    let out = (try? Data(contentsOf: outURL)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    var err = (try? Data(contentsOf: errURL)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    if timedOut { err += "\n[killed after \(timeout) s]" }
    return ProcessResult(status: timedOut ? -9 : p.terminationStatus, stdout: out, stderr: err)
}

/// A child process started with an empty signal mask and default signal actions.
///
/// Foundation's `Process` hands the parent's blocked-signal mask to the child, and the test runner
/// blocks SIGTERM on its threads, so a child started that way ignores SIGTERM. Clients that must be
/// stopped gracefully (a kcat group member that should leave its group) are started with this.
public final class SpawnedProcess: @unchecked Sendable {
    public let pid: pid_t

    public init(_ executable: String, _ arguments: [String], stdoutPath: String, stderrPath: String? = nil) throws {
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // Only 0–2 reach the child: tests run in parallel, and a socket another test holds open
        // would otherwise live on in this child after that test closed it.
        // (glibc ignores a close action whose descriptor was closed meanwhile.)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let fd = Int32(name), fd > 2 { posix_spawn_file_actions_addclose(&actions, fd) }
        }
        if let stderrPath {
            posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attr, argv, environ)
        guard rc == 0 else { throw BrokerFailed(message: "cannot start \(executable): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    /// Sends `signal` and waits up to `timeout` seconds; SIGKILL after that. Returns the wait status.
    @discardableResult
    public func stop(_ signal: Int32 = SIGTERM, timeout: Double = 20) -> Int32 {
        kill(pid, signal)
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if waitpid(pid, &status, WNOHANG) == pid { return status }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        return status
    }
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

/// Starts `p`, one launch at a time across the test process: Foundation's `Process.run()` on Linux
/// is not safe to call from several threads at once (a CI run crashed in its memcpy while two tests
/// launched children together), and tests run in parallel.
public func launch(_ p: Process) throws {
    try processLaunchLock.withLock { try p.run() }
}

private let processLaunchLock = NSLock()
