import ArgumentParser
import Foundation
import Topology

struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Run every broker of topology.json on this machine.",
        discussion: """
            Starts one `meridian broker` child process per broker in the topology (or in the regions
            named with --region), writes each one's output to <log-dir>/<region>-broker-<id>.log,
            waits until all print `ready`, and keeps running until Ctrl-C or SIGTERM, which stops
            every broker cleanly. If a broker dies, the others are stopped and the exit status is 1.

            TLS certificates named in the topology that do not exist yet are created with
            deploy/make-certs.sh (a private CA; fine for development, not for production).

            Examples:
              meridian up
              meridian up --topology topology.json --region us-east
              meridian up --log-dir /tmp/meridian-logs --log-level debug
            """
    )

    @Option(help: "Path of the topology file.")
    var topology: String = "topology.json"

    @Option(name: .customLong("region"), help: "Only start this region; repeatable. Default: every region.")
    var regions: [String] = []

    @Option(help: "Directory for per-broker log files (default: logs/ next to the topology file).")
    var logDir: String?

    @Option(help: "Script that creates missing certificates (default: deploy/make-certs.sh next to the topology file).")
    var makeCerts: String?

    @Option(help: "Log level passed to the brokers.")
    var logLevel: String = "info"

    @Option(help: "Seconds to wait for all brokers to be ready.")
    var readyTimeout: Double = 60

    func run() async throws {
        let topo: Topology
        do {
            topo = try Topology.load(path: topology)
        } catch {
            throw ValidationError("\(error)")
        }
        let problems = topo.validate()
        guard problems.isEmpty else {
            throw ValidationError("\(topology) is not valid:\n  " + problems.joined(separator: "\n  "))
        }
        let base = ((topology as NSString).deletingLastPathComponent as NSString).standardizingPath
        let baseDir = base.isEmpty ? FileManager.default.currentDirectoryPath : (base.hasPrefix("/") ? base : FileManager.default.currentDirectoryPath + "/" + base)
        let selected = regions.isEmpty ? topo.regions : try regions.map { name -> Topology.Region in
            guard let r = topo.region(name) else {
                throw ValidationError("region '\(name)' is not in \(topology); it has: \(topo.regions.map(\.name).joined(separator: ", "))")
            }
            return r
        }
        try ensureCertificates(selected, baseDir: baseDir)
        let logs = logDir ?? (baseDir as NSString).appendingPathComponent("logs")
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let topologyPath = topology.hasPrefix("/") ? topology : FileManager.default.currentDirectoryPath + "/" + topology

        let supervisor = Supervisor()
        // Signals are handled by the supervisor, not by the default action.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let stopRequested = SignalFlag(signals: [SIGINT, SIGTERM])

        for r in selected {
            for b in r.brokers {
                let name = "\(r.name)-broker-\(b.id)"
                let logPath = "\(logs)/\(name).log"
                let args = ["broker", "--topology", topologyPath, "--region", r.name, "--broker-id", "\(b.id)", "--log-level", logLevel]
                try supervisor.launch(name: name, executable: selfExecutable(), arguments: args, logPath: logPath)
            }
        }
        say("starting \(supervisor.children.count) broker(s); logs in \(logs)")
        let deadline = Date().addingTimeInterval(readyTimeout)
        var ready: [String: String] = [:]
        while ready.count < supervisor.children.count {
            for c in supervisor.children where ready[c.name] == nil {
                if let line = c.readyLine() {
                    ready[c.name] = line
                    say("  \(c.name): \(line)   (log: \(c.logPath))")
                } else if !c.process.isRunning {
                    printError("\(c.name) exited with status \(c.process.terminationStatus) before it was ready; last lines of \(c.logPath):")
                    printError(c.tail())
                    supervisor.stopAll()
                    throw ExitCode(1)
                }
            }
            if stopRequested.isSet { supervisor.stopAll(); return }
            if Date() > deadline {
                printError("not every broker was ready after \(Int(readyTimeout)) s; stopping")
                supervisor.stopAll()
                throw ExitCode(1)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        say("all \(supervisor.children.count) broker(s) ready; press Ctrl-C to stop")
        while !stopRequested.isSet {
            if let dead = supervisor.children.first(where: { !$0.process.isRunning }) {
                printError("\(dead.name) exited unexpectedly with status \(dead.process.terminationStatus); last lines of \(dead.logPath):")
                printError(dead.tail())
                supervisor.stopAll()
                throw ExitCode(1)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        say("stopping...")
        let statuses = supervisor.stopAll()
        for (name, status) in statuses { print("  \(name): exited with status \(status)") }
        if statuses.contains(where: { $0.1 != 0 }) { throw ExitCode(1) }
    }

    private func selfExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Creates missing certificate files named in the selected regions with the certs script.
    private func ensureCertificates(_ regions: [Topology.Region], baseDir: String) throws {
        var missingByDir: [String: Set<String>] = [:]
        var caByDir: [String: String] = [:]
        for r in regions {
            for b in r.brokers {
                let t = (b.tls ?? Topology.TLS()).overriding(r.tls)
                guard let cert = t.cert else { continue }
                let certPath = Topology.resolve(cert, relativeTo: baseDir)
                let dir = (certPath as NSString).deletingLastPathComponent
                if let ca = t.ca { caByDir[dir] = Topology.resolve(ca, relativeTo: baseDir) }
                let keyPath = t.key.map { Topology.resolve($0, relativeTo: baseDir) } ?? ""
                if !FileManager.default.fileExists(atPath: certPath) || !FileManager.default.fileExists(atPath: keyPath) {
                    missingByDir[dir, default: []].insert(((certPath as NSString).lastPathComponent as NSString).deletingPathExtension)
                }
            }
        }
        guard !missingByDir.isEmpty else { return }
        let script = makeCerts.map { Topology.resolve($0, relativeTo: FileManager.default.currentDirectoryPath) }
            ?? [Topology.resolve("deploy/make-certs.sh", relativeTo: baseDir),
                Topology.resolve("deploy/make-certs.sh", relativeTo: FileManager.default.currentDirectoryPath)]
                .first { FileManager.default.fileExists(atPath: $0) }
        guard let script, FileManager.default.fileExists(atPath: script) else {
            throw ValidationError("TLS certificates named in \(topology) are missing and deploy/make-certs.sh was not found; create them or pass --make-certs SCRIPT")
        }
        for (dir, names) in missingByDir {
            if let ca = caByDir[dir], (ca as NSString).deletingLastPathComponent != dir {
                throw ValidationError("certificates in \(dir) are missing but their CA \(ca) lives elsewhere; create them by hand")
            }
            say("creating TLS certificates in \(dir) with \(script) (a private development CA)")
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/bash")
            p.arguments = [script, "--out", dir] + names.sorted()
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw ValidationError("\(script) failed with status \(p.terminationStatus)") }
        }
    }
}

/// Child broker processes of `meridian up`.
final class Supervisor {
    struct Child {
        var name: String
        var process: Process
        var logPath: String

        func readyLine() -> String? {
            guard let text = try? String(contentsOfFile: logPath, encoding: .utf8) else { return nil }
            return text.split(separator: "\n").last(where: { $0.hasPrefix("ready ") }).map(String.init)
        }

        func tail(_ n: Int = 20) -> String {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").suffix(n).map { "    " + $0 }.joined(separator: "\n")
        }
    }

    private(set) var children: [Child] = []

    func launch(name: String, executable: String, arguments: [String], logPath: String) throws {
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.standardOutput = log
        p.standardError = log
        try p.run()
        children.append(Child(name: name, process: p, logPath: logPath))
    }

    /// SIGTERM to every child, SIGKILL after 30 s; returns each child's exit status.
    @discardableResult
    func stopAll() -> [(String, Int32)] {
        for c in children where c.process.isRunning { kill(c.process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(30)
        for c in children {
            while c.process.isRunning && Date() < deadline { usleep(20_000) }
            if c.process.isRunning {
                printError("\(c.name) did not stop within 30 s; killing it")
                kill(c.process.processIdentifier, SIGKILL)
                c.process.waitUntilExit()
            }
        }
        return children.map { ($0.name, $0.process.terminationStatus) }
    }
}

/// Set when one of the given signals arrives.
final class SignalFlag: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var set = false

    init(signals: [Int32]) {
        for s in signals {
            let src = DispatchSource.makeSignalSource(signal: s, queue: .global())
            src.setEventHandler { [weak self] in
                self?.lock.lock()
                self?.set = true
                self?.lock.unlock()
            }
            src.resume()
            sources.append(src)
        }
    }

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return set
    }
}
