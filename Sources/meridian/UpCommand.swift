import ArgumentParser
import Foundation
import Spawn
import KafkaClient
import Launcher
import LinkSimulator
import Mirror
import NIOPosix
import Topology

struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Run every broker and mirror of topology.json on this machine.",
        discussion: """
            Starts one `meridian broker` child process per broker in the topology and, for every region \
            that flows copy into, one `meridian mirror` (only the regions of --only / --region when \
            given, to run regions in separate terminals or on separate hosts). Each child writes to \
            <log-dir>/<name>.log. When all are ready it prints one line per region (listeners) and \
            per mirror (flows, metrics address). A child that dies is started again after 1 s, then \
            2, 4 … up to 30 s while it keeps dying, and says so. Ctrl-C or SIGTERM stops the mirrors \
            first, then the brokers, each cleanly; the exit status is 0 when every child stopped cleanly.

            --wan-latency and friends put a simulated WAN link (in this process) in front of every \
            remote broker a mirror reads, so lag and throughput behave as over a real link: one-way \
            latency in each direction, jitter, a bandwidth shared by the link's connections, and \
            loss as connection cuts (TCP hides real loss as stalls; clients must survive cuts anyway).

            TLS certificates named in the topology that do not exist yet, and the mirrors' client \
            certificates for TLS flows, are created with deploy/make-certs.sh (a private CA; fine \
            for development, not for production).

            Examples:
              meridian up
              meridian up --topology topology.json --only us-east
              meridian up --wan-latency 40ms --wan-jitter 5ms --wan-bandwidth 100mbit
              meridian up --log-dir /tmp/meridian-logs --log-level debug
            """
    )

    @Option(help: "Path of the topology file.")
    var topology: String = "topology.json"

    @Option(name: .customLong("only"), help: "Only start this region's brokers and mirror; repeatable. Default: every region.")
    var only: [String] = []

    @Option(name: .customLong("region"), help: .hidden)
    var regions: [String] = []

    @Option(help: "Directory for per-process log files (default: logs/ next to the topology file).")
    var logDir: String?

    @Option(help: "Script that creates missing certificates (default: deploy/make-certs.sh next to the topology file).")
    var makeCerts: String?

    @Option(help: "Log level passed to the children.")
    var logLevel: String = "info"

    @Option(help: "Seconds to wait for every child to be ready.")
    var readyTimeout: Double = 60

    @Option(help: "Seconds between two points of each mirror's lag history (meridian mirror --history-interval).")
    var historyInterval: Double = 10

    @Option(help: ArgumentHelp("One-way latency added in each direction between regions (e.g. 40ms).", valueName: "duration"))
    var wanLatency: String?

    @Option(help: ArgumentHelp("Random extra latency up to this much per chunk (never reorders).", valueName: "duration"))
    var wanJitter: String?

    @Option(help: ArgumentHelp("Bandwidth of each inter-region link, per direction (e.g. 100mbit, 1gbit, 20mbyte).", valueName: "rate"))
    var wanBandwidth: String?

    @Option(help: ArgumentHelp("Share of chunks that cut the connection (e.g. 0.1%).", valueName: "share"))
    var wanLoss: String?

    func validate() throws {
        guard historyInterval >= 0.01, historyInterval <= 86_400 else { throw ValidationError("--history-interval wants 0.01 to 86400 seconds") }
        guard readyTimeout >= 1, readyTimeout <= 86_400 else { throw ValidationError("--ready-timeout wants 1 to 86400 seconds") }
    }

    /// The simulated link, nil when no --wan-* flag is given.
    func wanSettings() throws -> LinkModel.Settings? {
        guard wanLatency != nil || wanJitter != nil || wanBandwidth != nil || wanLoss != nil else { return nil }
        var s = LinkModel.Settings()
        if let v = wanLatency {
            guard let n = LinkModel.Settings.parseDuration(v) else { throw ValidationError("--wan-latency wants a duration like 40ms or 0.2s, not '\(v)'") }
            s.latencyNanos = n
        }
        if let v = wanJitter {
            guard let n = LinkModel.Settings.parseDuration(v) else { throw ValidationError("--wan-jitter wants a duration like 5ms, not '\(v)'") }
            s.jitterNanos = n
        }
        if let v = wanBandwidth {
            guard let n = LinkModel.Settings.parseBandwidth(v) else { throw ValidationError("--wan-bandwidth wants a rate like 100mbit or 1gbit, not '\(v)'") }
            s.bitsPerSecond = n
        }
        if let v = wanLoss {
            guard let n = LinkModel.Settings.parseLoss(v) else { throw ValidationError("--wan-loss wants a share like 0.1% or 0.001, not '\(v)'") }
            s.loss = n
        }
        return s
    }

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
        let wan = try wanSettings()
        let base = ((topology as NSString).deletingLastPathComponent as NSString).standardizingPath
        let baseDir = base.isEmpty ? FileManager.default.currentDirectoryPath : (base.hasPrefix("/") ? base : FileManager.default.currentDirectoryPath + "/" + base)
        let topologyPath = topology.hasPrefix("/") ? topology : FileManager.default.currentDirectoryPath + "/" + topology
        let names = only + regions
        let selected = try (names.isEmpty ? topo.regions.map(\.name) : names).map { name -> Topology.Region in
            guard let r = topo.region(name) else {
                throw ValidationError("region '\(name)' is not in \(topology); it has: \(topo.regions.map(\.name).joined(separator: ", "))")
            }
            return r
        }
        try ensureCertificates(selected, topology: topo, baseDir: baseDir)
        let plan: UpPlan
        do {
            plan = try UpPlan(topology: topo, topologyPath: topologyPath, only: names, logLevel: logLevel)
        } catch let e as MirrorError {
            throw ValidationError(e.description)
        }
        let logs = logDir ?? (baseDir as NSString).appendingPathComponent("logs")
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)

        // Signals are handled by the supervisor, not by the default action.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let stopRequested = SignalFlag(signals: [SIGINT, SIGTERM])
        let supervisor = Supervisor(executable: selfExecutable())

        // Brokers first: mirrors need their clusters.
        for c in plan.brokers { try supervisor.launch(c, logPath: "\(logs)/\(c.name).log") }
        say("starting \(plan.brokers.count) broker(s); logs in \(logs)")
        guard try await waitReady(supervisor, plan.brokers.map(\.name), stopRequested) else { return }

        // The simulated WAN link: one proxy per remote broker a mirror reads, in this process.
        var proxies: [TCPProxy] = []
        let proxyLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var mirrors = plan.mirrors
        for i in mirrors.indices { mirrors[i].arguments += ["--history-interval", "\(historyInterval)"] }
        if let wan {
            var routeOf: [String: String] = [:]
            for m in mirrors {
                for remote in m.remoteBrokers where routeOf[remote] == nil {
                    let a = try BootstrapAddress.parseList(remote)[0]
                    let p = try TCPProxy(targetHost: a.host, targetPort: a.port, link: wan, group: proxyLoops)
                    proxies.append(p)
                    routeOf[remote] = "127.0.0.1:\(p.port)"
                }
            }
            for i in mirrors.indices {
                mirrors[i].arguments += mirrors[i].remoteBrokers.flatMap { ["--route", "\($0)=\(routeOf[$0]!)"] }
            }
            say("simulated WAN between regions: \(Self.describe(wan)), \(proxies.count) link(s)")
        }
        for c in mirrors { try supervisor.launch(c, logPath: "\(logs)/\(c.name).log") }
        if !mirrors.isEmpty {
            say("starting \(mirrors.count) mirror(s)")
            guard try await waitReady(supervisor, mirrors.map(\.name), stopRequested) else {
                await closeProxies(proxies, proxyLoops)
                return
            }
        }
        for r in selected {
            let listeners = r.brokers.map { b in supervisor.child(named: "\(r.name)-broker-\(b.id)")?.readyLine()?.dropFirst("ready ".count) ?? "?" }
            say("region \(r.name): \(r.brokers.count) broker(s) on \(listeners.joined(separator: "; "))")
        }
        for m in mirrors {
            let metrics = supervisor.child(named: m.name)?.metricsAddress() ?? m.metrics ?? "-"
            say("mirror \(m.region): \(m.flows.joined(separator: ", ")); metrics \(metrics) (meridian lag --topology \(topology))")
        }
        say("all \(supervisor.children.count) process(es) running; press Ctrl-C to stop")

        let start = ContinuousClock.now
        func nowMs() -> Int64 { Int64((ContinuousClock.now - start).components.seconds * 1000 + (ContinuousClock.now - start).components.attoseconds / 1_000_000_000_000_000) }
        while !stopRequested.isSet {
            for dead in supervisor.exitedUnexpectedly() {
                let delay = supervisor.scheduleRestart(dead, now: nowMs())
                printError("\(dead) exited unexpectedly (\(supervisor.child(named: dead)?.statusText ?? "?")); starting it again in \(Double(delay) / 1000) s — last lines of its log:")
                printError(supervisor.child(named: dead)?.tail(8) ?? "")
            }
            for name in supervisor.restartsDue(now: nowMs()) {
                do {
                    try supervisor.restart(name, now: nowMs())
                    say("\(name) started again (pid \(supervisor.child(named: name)?.pid ?? 0))")
                } catch {
                    printError("cannot start \(name) again: \(error)")
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        say("stopping: mirrors first, then brokers...")
        var statuses = supervisor.stop(kind: .mirror)
        statuses += supervisor.stop(kind: .broker)
        await closeProxies(proxies, proxyLoops)
        for (name, status) in statuses { say("  \(name): \(status == 0 ? "stopped cleanly" : "exited with status \(status)")") }
        if statuses.contains(where: { $0.1 != 0 }) { throw ExitCode(1) }
    }

    static func describe(_ s: LinkModel.Settings) -> String {
        var parts = ["\(Double(s.latencyNanos) / 1e6) ms each way"]
        if s.jitterNanos > 0 { parts.append("jitter up to \(Double(s.jitterNanos) / 1e6) ms") }
        if s.bitsPerSecond > 0 { parts.append("\(Double(s.bitsPerSecond) / 1e6) Mbit/s per direction") }
        if s.loss > 0 { parts.append("\(s.loss * 100) % of chunks cut the connection") }
        return parts.joined(separator: ", ")
    }

    private func closeProxies(_ proxies: [TCPProxy], _ loops: MultiThreadedEventLoopGroup) async {
        for p in proxies { p.close() }
        try? await loops.shutdownGracefully()
    }

    /// Waits until every named child is ready; false when a stop was requested meanwhile.
    private func waitReady(_ supervisor: Supervisor, _ names: [String], _ stop: SignalFlag) async throws -> Bool {
        let deadline = Date().addingTimeInterval(readyTimeout)
        var ready = Set<String>()
        while ready.count < names.count {
            for name in names where !ready.contains(name) {
                guard let c = supervisor.child(named: name) else { continue }
                if c.isReady() {
                    ready.insert(name)
                    say("  \(name) ready (pid \(c.pid), log \(c.logPath))")
                } else if !c.process.isRunning {
                    printError("\(name) exited (\(c.statusText)) before it was ready; last lines of \(c.logPath):")
                    printError(c.tail())
                    _ = supervisor.stopAll()
                    throw ExitCode(1)
                }
            }
            if stop.isSet {
                _ = supervisor.stopAll()
                return false
            }
            if Date() > deadline {
                printError("not every process was ready after \(Int(readyTimeout)) s (waiting for \(Set(names).subtracting(ready).sorted().joined(separator: ", "))); stopping")
                _ = supervisor.stopAll()
                throw ExitCode(1)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return true
    }

    private func selfExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Creates missing certificate files named in the selected regions with the certs script.
    private func ensureCertificates(_ regions: [Topology.Region], topology topo: Topology, baseDir: String) throws {
        var missingByDir: [String: Set<String>] = [:]
        var clientsByDir: [String: Set<String>] = [:]
        var caByDir: [String: String] = [:]
        // A TLS flow's mirror presents mirror-<target>.pem next to the source region's CA unless the flow names its own.
        for f in topo.flows where f.tls && f.clientCert == nil && regions.contains(where: { $0.name == f.target }) {
            guard let ca = topo.region(f.source)?.tls?.ca else { continue }
            let caPath = Topology.resolve(ca, relativeTo: baseDir)
            let dir = (caPath as NSString).deletingLastPathComponent
            if !FileManager.default.fileExists(atPath: "\(dir)/mirror-\(f.target).pem") {
                clientsByDir[dir, default: []].insert("mirror-\(f.target)")
                caByDir[dir] = caPath
            }
        }
        for r in regions {
            for b in r.brokers {
                let t = (b.tls ?? Topology.TLS()).overriding(r.tls)
                guard let cert = t.cert else { continue }
                let certPath = Topology.resolve(cert, relativeTo: baseDir)
                let dir = (certPath as NSString).deletingLastPathComponent
                if let ca = t.ca { caByDir[dir] = Topology.resolve(ca, relativeTo: baseDir) }
                let keyPath = t.key.map { Topology.resolve($0, relativeTo: baseDir) } ?? ""
                if !FileManager.default.fileExists(atPath: certPath) || !FileManager.default.fileExists(atPath: keyPath) {
                    // The certificate names every host the broker listens on (make-certs.sh NAME=HOST,...).
                    let hosts = Set(b.listeners.compactMap { l -> String? in
                        guard let sep = l.range(of: "://"), let colon = l.lastIndex(of: ":"), colon > sep.upperBound else { return nil }
                        let h = String(l[sep.upperBound..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
                        return h.isEmpty || h == "0.0.0.0" || h == "::" ? nil : h
                    }).sorted()
                    let name = ((certPath as NSString).lastPathComponent as NSString).deletingPathExtension
                    missingByDir[dir, default: []].insert(hosts.isEmpty ? name : "\(name)=\(hosts.joined(separator: ","))")
                }
            }
        }
        guard !missingByDir.isEmpty || !clientsByDir.isEmpty else { return }
        let script = makeCerts.map { Topology.resolve($0, relativeTo: FileManager.default.currentDirectoryPath) }
            ?? [Topology.resolve("deploy/make-certs.sh", relativeTo: baseDir),
                Topology.resolve("deploy/make-certs.sh", relativeTo: FileManager.default.currentDirectoryPath)]
                .first { FileManager.default.fileExists(atPath: $0) }
        guard let script, FileManager.default.fileExists(atPath: script) else {
            throw ValidationError("TLS certificates named in \(topology) are missing and deploy/make-certs.sh was not found; create them or pass --make-certs SCRIPT")
        }
        for dir in Set(missingByDir.keys).union(clientsByDir.keys).sorted() {
            let names = missingByDir[dir] ?? []
            let clients = clientsByDir[dir] ?? []
            if let ca = caByDir[dir], (ca as NSString).deletingLastPathComponent != dir {
                throw ValidationError("certificates in \(dir) are missing but their CA \(ca) lives elsewhere; create them by hand")
            }
            say("creating TLS certificates in \(dir) with \(script) (a private development CA): \((names.sorted() + clients.sorted()).joined(separator: ", "))")
            let p = ChildProcess("/bin/bash", [script, "--out", dir] + clients.sorted().flatMap { ["--client", $0] } + names.sorted())
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw ValidationError("\(script) failed with status \(p.terminationStatus)") }
        }
    }
}

/// The child processes of `meridian up`: started, watched, started again after a crash (with
/// ``RestartPolicy``'s backoff), stopped mirrors first.
final class Supervisor {
    final class Child {
        let plan: UpPlan.Child
        var process: ChildProcess
        let logPath: String
        var policy = RestartPolicy()
        var restartAt: Int64?
        /// Bytes of the log before the current run started (readiness is judged on this run's lines).
        var logStart: UInt64 = 0

        init(plan: UpPlan.Child, process: ChildProcess, logPath: String) {
            self.plan = plan
            self.process = process
            self.logPath = logPath
        }

        var name: String { plan.name }
        var pid: Int32 { process.processIdentifier }
        var statusText: String {
            if case .signal(let s)? = process.terminated { return "killed by signal \(s)" }
            return "status \(process.terminationStatus)"
        }

        private func currentRun() -> String {
            guard let h = FileHandle(forReadingAtPath: logPath) else { return "" }
            defer { try? h.close() }
            try? h.seek(toOffset: logStart)
            return String(decoding: h.readDataToEndOfFile(), as: UTF8.self)
        }

        func readyLine() -> String? {
            currentRun().split(separator: "\n").last(where: { $0.hasPrefix("ready ") }).map(String.init)
        }

        func isReady() -> Bool {
            switch plan.kind {
            case .broker: return readyLine() != nil
            case .mirror: return currentRun().contains("mirror \(plan.region): running")
            }
        }

        /// The address a mirror printed for its metrics.
        func metricsAddress() -> String? {
            guard let r = currentRun().range(of: "metrics on http://") else { return nil }
            return currentRun()[r.upperBound...].split(separator: "/").first.map { "http://\($0)/metrics" }
        }

        func tail(_ n: Int = 20) -> String {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").suffix(n).map { "    " + $0 }.joined(separator: "\n")
        }
    }

    let executable: String
    private(set) var children: [Child] = []
    private var stopping = false

    init(executable: String) {
        self.executable = executable
    }

    func child(named name: String) -> Child? { children.first { $0.name == name } }

    /// Starts a child with its output appended to `logPath`. It gets a process group of its own,
    /// so a Ctrl-C at the terminal reaches `up` alone, which stops the children in order; and it
    /// dies with `up`, so a killed `up` leaves no broker or mirror running.
    private func spawn(_ plan: UpPlan.Child, logPath: String) throws -> (ChildProcess, UInt64) {
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let start = ((try? FileManager.default.attributesOfItem(atPath: logPath))?[.size] as? NSNumber)?.uint64Value ?? 0
        let p = ChildProcess(executable, plan.arguments)
        p.standardOutput = .file(logPath, append: true)
        p.standardError = .standardOutput
        p.newProcessGroup = true
        try p.run()
        return (p, start)
    }

    func launch(_ plan: UpPlan.Child, logPath: String) throws {
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let (p, start) = try spawn(plan, logPath: logPath)
        let c = Child(plan: plan, process: p, logPath: logPath)
        c.logStart = start
        c.policy.started(at: 0)
        children.append(c)
    }

    /// Children that died without being asked to and are not yet waiting to start again.
    func exitedUnexpectedly() -> [String] {
        stopping ? [] : children.filter { !$0.process.isRunning && $0.restartAt == nil }.map(\.name)
    }

    /// Schedules a restart; returns the delay in milliseconds.
    func scheduleRestart(_ name: String, now: Int64) -> Int64 {
        guard let c = child(named: name) else { return 0 }
        let delay = c.policy.exited(at: now)
        c.restartAt = now + delay
        return delay
    }

    func restartsDue(now: Int64) -> [String] {
        children.filter { ($0.restartAt ?? .max) <= now }.map(\.name)
    }

    func restart(_ name: String, now: Int64) throws {
        guard let c = child(named: name) else { return }
        c.restartAt = nil
        let (p, start) = try spawn(c.plan, logPath: c.logPath)
        c.process = p
        c.logStart = start
        c.policy.started(at: now)
    }

    /// SIGTERM to the children of `kind`, SIGKILL after 30 s; returns each one's exit status.
    func stop(kind: UpPlan.Kind) -> [(String, Int32)] {
        stopping = true
        let mine = children.filter { $0.plan.kind == kind }
        for c in mine { c.process.signal(SIGTERM) }
        let deadline = Date().addingTimeInterval(30)
        for c in mine {
            while c.process.isRunning && Date() < deadline { usleep(20_000) }
            if c.process.isRunning {
                printError("\(c.name) did not stop within 30 s; killing it")
                c.process.signal(SIGKILL)
                c.process.waitUntilExit()
            }
        }
        return mine.map { ($0.name, $0.restartAt != nil ? 0 : $0.process.terminationStatus) }
    }

    @discardableResult
    func stopAll() -> [(String, Int32)] {
        stop(kind: .mirror) + stop(kind: .broker)
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
