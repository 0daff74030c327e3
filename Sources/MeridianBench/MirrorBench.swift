import Foundation
import Spawn
import KafkaClient
import KafkaProtocol
import KafkaWire
import LinkSimulator
import NIOCore
import NIOPosix

/// `meridian bench mirror`: how fast a mirror copies compared with how fast a broker takes produce
/// requests, on this machine, and what a WAN round trip costs it.
///
/// Starts broker processes of this executable (a target, a source, and a second source reached
/// only through a latency-adding proxy) and fills each source for `seconds` as fast as it accepts
/// 1 KiB records. Then, timed and in this order: a producer writing into the target as many bytes
/// as the first source holds (acks=all, as the mirror writes), and `meridian mirror` processes copying each source until
/// the target's log ends equal the source's. Prints the three rates, the target's CPU per GiB in
/// each (equal figures mean the phases ran under the same conditions), and the mirror's peak RSS
/// against its budget.
public struct MirrorBench: Sendable {
    public var seconds: Double
    public var partitions: Int32
    public var recordSize: Int
    public var roundTripMs: Int
    /// Parent of the brokers' data directories: a real disk, not tmpfs.
    public var dataDir: String
    public var keepData: Bool
    /// Extra arguments for the `meridian mirror` processes (tuning experiments).
    public var mirrorArguments: [String] = []

    public init(seconds: Double, partitions: Int32, recordSize: Int, roundTripMs: Int, dataDir: String, keepData: Bool) {
        self.seconds = seconds
        self.partitions = partitions
        self.recordSize = recordSize
        self.roundTripMs = roundTripMs
        self.dataDir = dataDir
        self.keepData = keepData
    }

    /// The mirror's stated memory budget: its fetch buffer (96 MiB of responses held or asked
    /// for, `MirrorSettings.bufferBytes`) plus produce requests in flight and the process itself.
    public static let rssBudget: Int64 = 256 << 20

    public func run(output: @escaping @Sendable (String) -> Void) async throws {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let root = (dataDir as NSString).appendingPathComponent("mirror-bench-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let fsType = StorageProbe.fileSystemType(root)
        output("meridian bench mirror: \(recordSize)-byte records, \(partitions) partitions, \(System.coreCount) cores, data in \(root) (\(fsType))")
        if fsType == "tmpfs" { output("warning: \(root) is on tmpfs; give --data-dir on a real disk for figures that mean something") }
        var children: [Child] = []
        let proxyLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            try await measure(exe: exe, root: root, proxyLoop: proxyLoop, group: group, children: &children, output: output)
        } catch {
            output("bench mirror failed: \(error) (logs in \(root))")
        }
        for c in children.reversed() { c.stop() }
        try? await proxyLoop.shutdownGracefully()
        try? await group.shutdownGracefully()
        if !keepData { try? FileManager.default.removeItem(atPath: root) }
    }

    private func measure(exe: String, root: String, proxyLoop: EventLoopGroup, group: EventLoopGroup, children: inout [Child],
                         output: @escaping @Sendable (String) -> Void) async throws {
        let targetPort = try LocalPort.free(), sourcePort = try LocalPort.free(), wanPort = try LocalPort.free()
        let proxy = try TCPProxy(targetHost: "127.0.0.1", targetPort: wanPort, group: proxyLoop)
        defer { proxy.close() }
        func broker(_ name: String, _ port: Int, advertised: Int? = nil) throws -> Child {
            var args = ["broker", "--data-dir", "\(root)/\(name)", "--listener", "PLAINTEXT://127.0.0.1:\(port)"]
            if let advertised { args += ["--advertised-listener", "PLAINTEXT://127.0.0.1:\(advertised)"] }
            let c = try Child(exe, args, log: "\(root)/\(name).log")
            children.append(c)
            return c
        }
        let target = try broker("target", targetPort)
        let source = try broker("source", sourcePort)
        let wanSource = try broker("wan-source", wanPort, advertised: proxy.port)
        for c in children { try await c.waitForOutput("ready", seconds: 30) }
        // Both sources are filled first, untimed. Writing into the page cache costs what the memory
        // behind it costs: on a VM whose freed memory goes back to the host (virtio-balloon free page
        // reporting), the first write into such memory costs the host a fault per page, several times
        // the copy itself. Filling first leaves the timed phases below — the broker's produce and the
        // mirror's copies, all into the target — the same kind of memory; the target's CPU per GiB,
        // printed for each, shows whether they were alike.
        let filled = try await fill(port: sourcePort, topic: "bench-mirror", acks: 1, group: group)
        let wanFilled = try await fill(port: proxy.port, topic: "bench-mirror-wan", acks: 1, group: group)
        // The fills' dirty pages (acks=1 leaves them to the kernel) go to disk now, not during a timed phase.
        sync()
        output("  (sources filled with \(formatBytes(Double(filled.bytes))) and \(formatBytes(Double(wanFilled.bytes))), written back to disk)")

        // 1. What the target broker takes from a producer, acks=all: as many bytes as the mirror
        // will copy, so both write as much into the target's page cache.
        let cpu0 = ProcessStats.cpuSeconds(pid: target.pid) ?? 0
        let produced = try await fill(port: targetPort, topic: "bench-produce", acks: -1, group: group, maxBytes: filled.bytes)
        let produceCPU = (ProcessStats.cpuSeconds(pid: target.pid) ?? 0) - cpu0
        output(String(format: "broker produce, acks=all:            %7.1f MB/s  (%@ in %.1f s; broker CPU %.1f s, %.1f s per GiB)",
                      produced.mbPerSecond, formatBytes(Double(produced.bytes)), produced.seconds, produceCPU,
                      produceCPU / (Double(produced.bytes) / Double(1 << 30))))

        // 2. The mirror over loopback.
        let direct = try await mirror(exe: exe, root: root, name: "direct", sourcePort: sourcePort, targetPort: targetPort,
                                      topic: "bench-mirror", bytes: filled.bytes, group: group, children: &children,
                                      brokers: [source.pid, target.pid])
        output(String(format: "mirror, no added latency:            %7.1f MB/s  (%.0f%% of broker produce; %.1f s; peak RSS %@)",
                      direct.mbPerSecond, direct.mbPerSecond / produced.mbPerSecond * 100, direct.seconds, formatBytes(Double(direct.peakRSS))))
        output("  CPU during the copy: \(direct.cpu)")

        // 3. The mirror with a round trip of latency to its source.
        output("  (now \(roundTripMs) ms round trip between the mirror and the second source, through the proxy)")
        proxy.setDelay(.milliseconds(Int64(roundTripMs / 2)))
        let wan = try await mirror(exe: exe, root: root, name: "wan", sourcePort: proxy.port, targetPort: targetPort,
                                   topic: "bench-mirror-wan", bytes: wanFilled.bytes, group: group, children: &children,
                                   brokers: [wanSource.pid, target.pid])
        output(String(format: "mirror, %d ms round trip:            %7.1f MB/s  (%.0f%% of the no-latency figure; %.1f s; peak RSS %@)",
                      roundTripMs, wan.mbPerSecond, wan.mbPerSecond / direct.mbPerSecond * 100, wan.seconds, formatBytes(Double(wan.peakRSS))))
        output("  CPU during the copy: \(wan.cpu)")
        let peak = max(direct.peakRSS, wan.peakRSS)
        output("mirror memory: peak RSS \(formatBytes(Double(peak))), budget \(formatBytes(Double(Self.rssBudget))) — \(peak <= Self.rssBudget ? "within" : "OVER") budget")
    }

    struct Copy {
        var bytes: Int64
        var seconds: Double
        var peakRSS: Int64
        var cpu: String
        var mbPerSecond: Double { Double(bytes) / seconds / 1_000_000 }
    }

    /// Produces for `seconds`, or until `maxBytes` when given (then for at most ten minutes).
    private func fill(port: Int, topic: TopicName, acks: Int16, group: EventLoopGroup, maxBytes: Int64? = nil) async throws -> ProduceLoad.Result {
        let conn = try await KafkaConnection.connect(host: "127.0.0.1", port: port, group: group, clientID: "meridian-bench")
        var req = CreateTopicsRequest()
        req.timeoutMs = 30_000
        req.topics = [.init(name: topic, numPartitions: partitions, replicationFactor: 1)]
        _ = try await conn.send(req)
        let r = try await ProduceLoad(connection: conn, topic: topic, partitions: partitions, recordSize: recordSize, acks: acks,
                                      bytesPerRequest: 1 << 20, inFlight: 8, duration: maxBytes == nil ? seconds : 600,
                                      maxBytes: maxBytes).run().get()
        await conn.close()
        guard r.errors.isEmpty else { throw BenchError("filling \(topic) failed: \(r.errors)") }
        return r
    }

    private func mirror(exe: String, root: String, name: String, sourcePort: Int, targetPort: Int, topic: TopicName, bytes: Int64,
                        group: EventLoopGroup, children: inout [Child], brokers: [Int32]) async throws -> Copy {
        let brokerCPU0 = brokers.map { ProcessStats.cpuSeconds(pid: $0) ?? 0 }
        let topology = """
            {"version": 1, "regions": [
              {"name": "src-\(name)", "bootstrap": ["127.0.0.1:\(sourcePort)"]},
              {"name": "dst", "bootstrap": ["127.0.0.1:\(targetPort)"]}],
             "flows": [{"name": "bench-\(name)", "source": "src-\(name)", "target": "dst", "topics": {"include": ["\(topic)"]}}]}
            """
        let path = "\(root)/topology-\(name).json"
        try topology.write(toFile: path, atomically: true, encoding: .utf8)
        let source = KafkaCluster(bootstrap: [BootstrapAddress(host: "127.0.0.1", port: sourcePort)], group: group)
        let target = KafkaCluster(bootstrap: [BootstrapAddress(host: "127.0.0.1", port: targetPort)], group: group)
        let tps = (0..<partitions).map { TopicPartition(topic, $0) }
        let want = try await KafkaAdmin(cluster: source).listOffsets(tps, .latest)
        await source.close()
        let remote = tps.map { TopicPartition(TopicName("src-\(name).\(topic)"), $0.partition) }
        let started = ContinuousClock.now
        let m = try Child(exe, ["mirror", "--topology", path, "--region", "dst", "--log-level", "warning"] + mirrorArguments, log: "\(root)/mirror-\(name).log")
        children.append(m)
        var peak: Int64 = 0
        while true {
            if let rss = ProcessStats.rss(pid: m.pid) { peak = max(peak, rss.peak) }
            if let have = try? await KafkaAdmin(cluster: target).listOffsets(remote, .latest),
               zip(tps, remote).allSatisfy({ have[$0.1] == want[$0.0] }) { break }
            guard m.isRunning else { await target.close(); throw BenchError("the mirror exited; see \(root)/mirror-\(name).log") }
            guard ContinuousClock.now - started < .seconds(600) else { await target.close(); throw BenchError("the mirror did not finish in 10 minutes") }
            try await Task.sleep(for: .milliseconds(100))
        }
        let elapsed = ContinuousClock.now - started
        await target.close()
        if let rss = ProcessStats.rss(pid: m.pid) { peak = max(peak, rss.peak) }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let mirrorCPU = ProcessStats.cpuSeconds(pid: m.pid) ?? 0
        let brokerCPU = zip(brokers, brokerCPU0).map { (ProcessStats.cpuSeconds(pid: $0.0) ?? 0) - $0.1 }
        let gib = Double(bytes) / Double(1 << 30)
        let cpu = String(format: "mirror %.1f s, source broker %.1f s, target broker %.1f s (%.1f s per GiB), over %.1f s", mirrorCPU,
                         brokerCPU.first ?? 0, brokerCPU.last ?? 0, (brokerCPU.last ?? 0) / gib, seconds)
        m.stop()
        return Copy(bytes: bytes, seconds: seconds, peakRSS: peak, cpu: cpu)
    }

    /// A child process of this executable, its standard output in `<log>.out`, standard error in `log`.
    final class Child: @unchecked Sendable {
        let process: ChildProcess
        let out: String

        init(_ exe: String, _ args: [String], log: String) throws {
            out = log + ".out"
            process = ChildProcess(exe, args)
            process.standardOutput = .file(out)
            process.standardError = .file(log)
            try process.run()
        }

        var pid: Int32 { process.processIdentifier }
        var isRunning: Bool { process.isRunning }

        func waitForOutput(_ text: String, seconds: Double) async throws {
            let deadline = ContinuousClock.now + .seconds(seconds)
            while ContinuousClock.now < deadline {
                if let s = try? String(contentsOfFile: out, encoding: .utf8), s.contains(text) { return }
                guard process.isRunning else { throw BenchError("\(process.arguments.first ?? "child") exited early; see \(out)") }
                try await Task.sleep(for: .milliseconds(20))
            }
            throw BenchError("no '\(text)' from \(process.arguments.first ?? "child") within \(Int(seconds)) s")
        }

        /// SIGTERM, then SIGKILL after 20 s.
        func stop() {
            guard process.isRunning else { return }
            process.signal(SIGTERM)
            let deadline = Date().addingTimeInterval(20)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { process.signal(SIGKILL) }
            process.waitUntilExit()
        }
    }
}
