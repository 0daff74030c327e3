#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSpawn
import Foundation

/// A child process, started by `fork` and `execve` from one long-lived thread of this process.
///
/// Used instead of Foundation's `Process` for every child Meridian and its tests start, for three
/// reasons found the hard way:
/// - Foundation's `Process.run()` on Linux (swift-corelibs-foundation up to 6.3.1) can crash: it
///   copies each `/proc/self/fd` entry's 256-byte `d_name` whole, reading past the end of glibc's
///   readdir buffer when a short entry sits at its end (the "memcpy, bad pointer" crash of the
///   test suite, swift-corelibs-foundation PR #5472);
/// - `Process` hands the parent's blocked-signal mask to the child (the test runner blocks SIGTERM,
///   so its children ignored SIGTERM); here a child starts with default signal actions;
/// - a child should not outlive its parent: by default (``dieWithParent``) it is killed when this
///   process ends, however it ends (a crash, SIGKILL, a time limit), so `meridian up`'s brokers and a
///   test's brokers never linger as orphans. Linux delivers that signal when the *thread* that forked
///   the child ends, so every child is forked from one thread that lives as long as the process.
///
/// Only descriptors 0–2 reach the child. Thread-safe: the state is behind a lock; waiting polls
/// `waitpid` with `WNOHANG`, so the process reaps only its own children, one at a time.
public final class ChildProcess: @unchecked Sendable {
    /// Where one of the child's standard descriptors goes.
    public enum Stdio: Sendable {
        /// The parent's own descriptor of the same number.
        case inherit
        /// `/dev/null`.
        case null
        /// A file, created if missing: truncated, or appended to with `append`.
        case file(String, append: Bool = false)
        /// An open descriptor of the parent (left open in the parent).
        case fileDescriptor(Int32)
        /// For standard error: wherever the child's standard output goes.
        case standardOutput
    }

    /// How the child ended.
    public enum Termination: Sendable, Equatable {
        case exit(Int32)
        case signal(Int32)
    }

    public let executablePath: String
    public let arguments: [String]
    /// The child's environment; nil inherits this process's.
    public var environment: [String: String]?
    public var currentDirectoryPath: String?
    public var standardInput: Stdio = .null
    public var standardOutput: Stdio = .inherit
    public var standardError: Stdio = .inherit
    /// Put the child in a process group of its own (a Ctrl-C at the terminal then does not reach it).
    public var newProcessGroup = false
    /// Kill the child (SIGKILL) when this process ends. On by default.
    public var dieWithParent = true

    private let lock = NSLock()
    private var pid: pid_t = 0
    private var termination: Termination?

    public init(_ executablePath: String, _ arguments: [String] = []) {
        self.executablePath = executablePath
        self.arguments = arguments
    }

    /// Starts the child; throws ``SpawnError`` when it cannot be started (the executable is
    /// missing or not executable, a file cannot be opened, fork fails).
    public func run() throws {
        var opened: [Int32] = []
        defer { for fd in opened { close(fd) } }
        func descriptor(_ s: Stdio, _ standard: Int32, write: Bool) throws -> Int32 {
            switch s {
            case .inherit, .standardOutput: return standard
            case .fileDescriptor(let fd): return fd
            case .null:
                let fd = open("/dev/null", (write ? O_WRONLY : O_RDONLY) | O_CLOEXEC)
                guard fd >= 0 else { throw SpawnError(executable: executablePath, what: "cannot open /dev/null", errno: errno) }
                opened.append(fd)
                return fd
            case .file(let path, let append):
                let flags = write ? (O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC)) : O_RDONLY
                let fd = open(path, flags | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw SpawnError(executable: executablePath, what: "cannot open \(path)", errno: errno) }
                opened.append(fd)
                return fd
            }
        }
        let stdin = try descriptor(standardInput, 0, write: false)
        let stdout = try descriptor(standardOutput, 1, write: true)
        let stderr = if case .standardOutput = standardError { stdout } else { try descriptor(standardError, 2, write: true) }
        let env = environment.map { $0.map { "\($0.key)=\($0.value)" } } ?? ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        let argv = ([executablePath] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup($0) } + [nil]
        defer {
            for a in argv { free(a) }
            for e in envp { free(e) }
        }
        let path = executablePath, cwd = currentDirectoryPath
        let group: Int32 = newProcessGroup ? 1 : 0, die: Int32 = dieWithParent ? 1 : 0
        let result: pid_t = SpawnThread.shared.run {
            argv.withUnsafeBufferPointer { a in
                envp.withUnsafeBufferPointer { e in
                    if let cwd {
                        return meridian_spawn(path, a.baseAddress, e.baseAddress, stdin, stdout, stderr, cwd, group, die)
                    }
                    return meridian_spawn(path, a.baseAddress, e.baseAddress, stdin, stdout, stderr, nil, group, die)
                }
            }
        }
        guard result > 0 else { throw SpawnError(executable: executablePath, what: "cannot start it", errno: -result) }
        lock.withLock { pid = result }
    }

    /// The child's process id (0 before ``run()``).
    public var processIdentifier: pid_t { lock.withLock { pid } }

    /// Whether the child has been started and has not ended yet (reaps it once it has).
    public var isRunning: Bool {
        lock.withLock {
            guard pid > 0, termination == nil else { return false }
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                termination = Self.termination(of: status)
                return false
            }
            if r < 0 && errno == ECHILD {
                termination = .exit(-1)
                return false
            }
            return true
        }
    }

    /// How the child ended; nil while it runs.
    public var terminated: Termination? {
        _ = isRunning
        return lock.withLock { termination }
    }

    /// The exit status, or the signal number when a signal ended the child (as Foundation's
    /// `Process.terminationStatus`); -1 while it runs.
    public var terminationStatus: Int32 {
        switch terminated {
        case .exit(let code)?: return code
        case .signal(let s)?: return s
        case nil: return -1
        }
    }

    /// Sends `signal` to the child while it runs.
    public func signal(_ signal: Int32) {
        let p = processIdentifier
        if p > 0 && isRunning { kill(p, signal) }
    }

    /// Blocks until the child has ended (polling; never from an event loop).
    public func waitUntilExit() {
        while isRunning { usleep(10_000) }
    }

    /// Suspends until the child has ended or `timeout` passed; true when it ended.
    @discardableResult
    public func wait(timeout: Duration? = nil) async -> Bool {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while isRunning {
            if let deadline, ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    /// SIGTERM, then SIGKILL if the child has not ended after `grace`; returns how it ended.
    @discardableResult
    public func stop(grace: Duration = .seconds(30)) async -> Termination? {
        signal(SIGTERM)
        if !(await wait(timeout: grace)) {
            signal(SIGKILL)
            await wait()
        }
        return terminated
    }

    private static func termination(of status: Int32) -> Termination {
        let low = status & 0x7F
        return low == 0 ? .exit((status >> 8) & 0xFF) : .signal(low)
    }
}

/// A child that could not be started.
public struct SpawnError: Error, CustomStringConvertible {
    public var executable: String
    public var what: String
    public var errno: Int32
    public var description: String { "\(executable): \(what): \(String(cString: strerror(errno)))" }
}

/// The one thread every child is forked from. Linux's parent-death signal follows the thread that
/// forked a child, and this one never ends, so a child's death signal comes only when the whole
/// process ends.
final class SpawnThread: @unchecked Sendable {
    static let shared = SpawnThread()

    private let condition = NSCondition()
    private var jobs: [() -> Void] = []

    private init() {
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "meridian-spawn"
        thread.start()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }

    /// Runs `body` on the spawn thread and returns its result (the caller blocks meanwhile).
    func run<T>(_ body: @escaping () -> T) -> T {
        let done = DispatchSemaphore(value: 0)
        var result: T?
        condition.lock()
        jobs.append {
            result = body()
            done.signal()
        }
        condition.signal()
        condition.unlock()
        done.wait()
        return result!
    }
}
