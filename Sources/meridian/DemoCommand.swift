import ArgumentParser
import Foundation
import Spawn
import KafkaClient
import KafkaProtocol
import LinkSimulator
import Logging
import Mirror
import NIOCore
import NIOPosix
import Topology

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "See the whole product work on this machine in about a minute.",
        discussion: """
            Writes a three-region topology (us-east ⇄ eu-west active-active with prefix naming, \
            us-east → ap-south one way, mTLS between regions) into --dir, creates development \
            certificates, starts every broker and mirror with `meridian up --wan-latency 40ms`, \
            produces a steady stream of keyed orders in us-east and eu-west, runs the consumer group \
            billing in us-east, and shows: the live lag table, a failover of billing to eu-west that \
            reads exactly the rest (re-read 0, skipped 0), the audit of the us-east → eu-west copy, \
            and an HTML lag report. Then it stops everything it started (or, with --keep-running, \
            leaves the topology up and prints commands to explore it).

            Examples:
              meridian demo
              meridian demo --keep-running
              meridian demo --dir /tmp/meridian-demo --seconds 30
            """
    )

    @Option(help: "Directory for the demo's topology, certificates, data and logs (reused and cleaned on each run).")
    var dir: String = "meridian-demo"

    @Option(help: "Seconds of producing before the failover (billing reads during the first 70 %).")
    var seconds: Double = 20

    @Option(help: "Orders per second produced in each of us-east and eu-west.")
    var rate: Int = 200

    @Flag(help: "Leave the topology running at the end and print commands to explore it.")
    var keepRunning = false

    @Option(help: "One-way latency of the simulated WAN between regions.")
    var wanLatency: String = "40ms"

    func validate() throws {
        guard seconds >= 2, seconds <= 3600 else { throw ValidationError("--seconds wants 2 to 3600") }
        guard rate >= 1, rate <= 100_000 else { throw ValidationError("--rate wants 1 to 100000 orders per second") }
    }

    /// Prints a numbered step.
    final class Steps: @unchecked Sendable {
        var n = 0
        let total: Int
        let started = ContinuousClock.now
        init(total: Int) { self.total = total }
        func step(_ text: String) {
            n += 1
            let t = ContinuousClock.now - started
            say(String(format: "\n[%d/%d %4.0f s] ", n, total, Double(t.components.seconds) + Double(t.components.attoseconds) / 1e18) + text)
        }
        var elapsed: Double {
            let t = ContinuousClock.now - started
            return Double(t.components.seconds) + Double(t.components.attoseconds) / 1e18
        }
    }

    func run() async throws {
        let steps = Steps(total: 8)
        let cwd = FileManager.default.currentDirectoryPath
        let root = dir.hasPrefix("/") ? dir : cwd + "/" + dir
        let script = [cwd + "/deploy/make-certs.sh", root + "/make-certs.sh"].first { FileManager.default.fileExists(atPath: $0) }
        guard let script else {
            throw ValidationError("deploy/make-certs.sh is not in \(cwd); run the demo from the Meridian checkout (swift run meridian demo)")
        }

        // 1. Topology.
        steps.step("Writing a three-region topology to \(root)/topology.json")
        for sub in ["data", "logs"] { try? FileManager.default.removeItem(atPath: root + "/" + sub) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let regions = ["us-east", "eu-west", "ap-south"]
        var plain: [String: String] = [:], ssl: [String: String] = [:], metrics: [String: String] = [:]
        for r in regions {
            plain[r] = "127.0.0.1:\(try LocalPort.free())"
            ssl[r] = "127.0.0.1:\(try LocalPort.free())"
            metrics[r] = "127.0.0.1:\(try LocalPort.free())"
        }
        let regionJSON = regions.map { r in
            """
                {"name": "\(r)", "tls": {"ca": "certs/ca.pem", "clientAuth": "required"}, "mirrorMetrics": "\(metrics[r]!)",
                 "defaults": {"partitions": 3},
                 "brokers": [{"id": 1, "listeners": ["PLAINTEXT://\(plain[r]!)", "SSL://\(ssl[r]!)"], "dataDir": "data/\(r)",
                              "tls": {"cert": "certs/\(r)-broker-1.pem", "key": "certs/\(r)-broker-1.key"}}]}
            """
        }.joined(separator: ",\n")
        let flow = { (name: String, s: String, t: String) in
            """
                {"name": "\(name)", "source": "\(s)", "target": "\(t)", "topics": {"include": ["orders"]}, "groups": {"include": ["billing"]},
                 "naming": "prefix", "tls": true, "groupSyncIntervalMs": 1000, "slo": {"maxLagSeconds": 10, "maxLagRecords": 5000}}
            """
        }
        let topologyPath = root + "/topology.json"
        try """
            {"version": 1,
             "regions": [
            \(regionJSON)
             ],
             "flows": [
            \(flow("us-to-eu", "us-east", "eu-west")),
            \(flow("eu-to-us", "eu-west", "us-east")),
            \(flow("us-to-ap", "us-east", "ap-south"))
             ]}

            """.write(toFile: topologyPath, atomically: true, encoding: .utf8)
        say("  us-east ⇄ eu-west active-active (prefix naming: orders arrives as us-east.orders in eu-west and eu-west.orders in us-east)")
        say("  us-east → ap-south one way; mirrors read other regions over mTLS; \(wanLatency) simulated WAN each way")
        let topo = try Topology.load(path: topologyPath)

        // 2. Everything up.
        steps.step("Starting 3 brokers and 3 mirrors: meridian up --topology \(dir)/topology.json --wan-latency \(wanLatency)")
        let upOut = root + "/up.out"
        _ = FileManager.default.createFile(atPath: upOut, contents: nil)
        let up = ChildProcess((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0],
                              ["up", "--topology", topologyPath, "--wan-latency", wanLatency, "--make-certs", script, "--history-interval", "1"])
        up.standardOutput = .file(upOut, append: true)
        up.standardError = .standardOutput
        // A Ctrl-C reaches `up` too (same process group), which stops its children in order; the
        // demo then waits for it. `up` dies with the demo unless it is to keep running after it.
        up.dieWithParent = !keepRunning
        try up.run()
        var stopped = false
        func stopUp() async -> Int32 {
            guard !stopped else { return 0 }
            stopped = true
            up.signal(SIGTERM)
            let by = Date().addingTimeInterval(60)
            while up.isRunning && Date() < by { try? await Task.sleep(for: .milliseconds(50)) }
            if up.isRunning { up.signal(SIGKILL); up.waitUntilExit() }
            return up.terminationStatus
        }
        signal(SIGINT, SIG_IGN)
        let interrupted = SignalFlag(signals: [SIGINT, SIGTERM])
        let elg = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        do {
            try await waitForUp(upOut, up, interrupted)
            for line in Self.read(upOut).split(separator: "\n") where line.hasPrefix("region ") || line.hasPrefix("mirror ") || line.hasPrefix("simulated") {
                say("  " + line)
            }
            try await demo(topo, root: root, plain: plain, steps: steps, elg: elg, interrupted: interrupted)
        } catch {
            say("\nstopping everything after: \(error)")
            _ = await stopUp()
            try? await elg.shutdownGracefully()
            throw error
        }
        try? await elg.shutdownGracefully()

        if keepRunning {
            steps.step("Leaving the topology running (meridian up, pid \(up.processIdentifier))")
            say("""
                  explore it:
                    kcat -b \(plain["us-east"]!) -L
                    kcat -b \(plain["eu-west"]!) -C -t us-east.orders -o beginning -c 5 -f '%k %s\\n'
                    meridian consume -b \(plain["ap-south"]!) -t us-east.orders -o beginning -c 5
                    meridian lag --topology \(dir)/topology.json --watch
                    meridian lag --topology \(dir)/topology.json --groups
                    meridian audit --topology \(dir)/topology.json --flow us-to-ap
                  logs: \(dir)/logs/   stop everything: kill \(up.processIdentifier)
                """)
            return
        }
        steps.step("Stopping everything: mirrors first, then brokers")
        let status = await stopUp()
        let leftovers = Self.listening(Array(plain.values) + Array(ssl.values) + Array(metrics.values))
        guard status == 0 else { throw ValidationError("meridian up exited with status \(status); see \(root)/up.out and \(root)/logs/") }
        guard leftovers.isEmpty else { throw ValidationError("still listening after the stop: \(leftovers.joined(separator: ", "))") }
        say(String(format: "  everything stopped cleanly; nothing left listening. Done in %.0f s.", steps.elapsed))
        say("  run it again any time; `meridian demo --keep-running` leaves the regions up to explore.")
    }

    func waitForUp(_ out: String, _ up: ChildProcess, _ interrupted: SignalFlag) async throws {
        let deadline = Date().addingTimeInterval(120)
        while !Self.read(out).contains("running; press Ctrl-C") {
            if !up.isRunning { throw ValidationError("meridian up stopped (status \(up.terminationStatus)):\n\(Self.read(out).suffix(2_000))") }
            if interrupted.isSet { throw CancellationError() }
            if Date() > deadline { throw ValidationError("the regions were not up after 120 s; see \(out)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    func demo(_ topo: Topology, root: String, plain: [String: String], steps: Steps, elg: EventLoopGroup, interrupted: SignalFlag) async throws {
        func cluster(_ region: String) throws -> KafkaCluster {
            var o = KafkaCluster.Options()
            o.retryTimeout = .seconds(20)
            o.clientID = "meridian-demo"
            return KafkaCluster(bootstrap: try BootstrapAddress.parseList(plain[region]!), options: o, group: elg)
        }
        let us = try cluster("us-east"), eu = try cluster("eu-west")
        do {
            try await demo(topo, root: root, us: us, eu: eu, steps: steps, interrupted: interrupted)
        } catch {
            await us.close()
            await eu.close()
            throw error
        }
        await us.close()
        await eu.close()
    }

    func demo(_ topo: Topology, root: String, us: KafkaCluster, eu: KafkaCluster, steps: Steps, interrupted: SignalFlag) async throws {
        for c in [us, eu] {
            do {
                try await KafkaAdmin(cluster: c).createTopic("orders", partitions: 3)
            } catch let KafkaClientError.broker(code, _) where code == .topicAlreadyExists {}
        }

        // 3. Traffic.
        steps.step("Producing \(rate) orders per second in us-east and in eu-west; consumer group billing reads orders in us-east")
        let stop = Stop()
        let producers = [("us-east", us), ("eu-west", eu)].map { region, c in
            Task { try await Self.produce(region: region, cluster: c, rate: rate, stop: stop) }
        }
        var config = ConsumerConfig()
        config.groupID = "billing"
        config.enableAutoCommit = false
        config.autoOffsetReset = .earliest
        let consumer = KafkaConsumer(cluster: us, config: config)
        try consumer.subscribe(["orders"])
        let consumed = Consumed()
        // billing stops reading a while before the orders stop, so the failover has a remainder to deliver.
        let stopReading = Stop()
        let consuming = Task {
            while !stopReading.isSet {
                for r in try await consumer.poll(timeout: .milliseconds(200)) { consumed.add(r) }
            }
        }

        // 4. Lag while it runs.
        steps.step("Lag while orders flow (meridian lag): records and seconds behind per partition, worst first")
        let flows = topo.flows
        let until = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        let readUntil = ContinuousClock.now + .milliseconds(Int64(seconds * 700))
        while ContinuousClock.now < until {
            try await Task.sleep(for: .milliseconds(Int64(min(5, seconds / 3) * 1000)))
            if ContinuousClock.now >= readUntil && !stopReading.isSet {
                stopReading.set()
                try await consuming.value
                try await consumer.commit()
                say("  — billing stops reading in us-east and commits; orders keep coming")
            }
            if interrupted.isSet { throw CancellationError() }
            let g = await LagGathering.collect(topo, base: root, flows: flows, fromClusters: false, groups: false)
            let top = LagReport(rows: Array(g.report.rows.prefix(5)), flows: flows)
            say("  — \(consumed.count) orders consumed by billing so far; \(g.report.rows.count) mirrored partitions, worst 5:")
            say(top.table().split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            for f in g.failures { say("    (\(f))") }
        }
        stop.set()
        for p in producers { try await p.value }
        stopReading.set()
        try await consuming.value
        try await consumer.commit()
        let committed = consumer.currentPositions
        await consumer.close()

        // 5. Failover.
        steps.step("Failing billing over to eu-west: it resumes on us-east.orders at the offsets the mirror translated")
        let usAdmin = KafkaAdmin(cluster: us), euAdmin = KafkaAdmin(cluster: eu)
        let sourceParts = committed.keys.sorted { $0.partition < $1.partition }
        let ends = try await usAdmin.listOffsets(sourceParts, .latest)
        let remote = sourceParts.map { TopicPartition("us-east.orders", $0.partition) }
        let deadline = ContinuousClock.now + .seconds(60)
        var synced: [TopicPartition: Int64] = [:]
        while ContinuousClock.now < deadline {
            let copied = try await euAdmin.listOffsets(remote, .latest)
            synced = try await euAdmin.groupOffsets("billing", partitions: remote)
            let caughtUp = sourceParts.allSatisfy { copied[TopicPartition("us-east.orders", $0.partition)] == ends[$0] }
            let translated = sourceParts.allSatisfy { synced[TopicPartition("us-east.orders", $0.partition)] == committed[$0] }
            if caughtUp && translated { break }
            if interrupted.isSet { throw CancellationError() }
            try await Task.sleep(for: .milliseconds(300))
        }
        say("  committed in us-east: " + sourceParts.map { "orders-\($0.partition)@\(committed[$0]!)" }.joined(separator: " ")
            + "; synced into eu-west: " + remote.map { "\($0.topic)-\($0.partition)@\(synced[$0].map(String.init) ?? "none")" }.joined(separator: " "))
        // What billing has not consumed yet, read from us-east itself: what the failover must deliver.
        let rest = try await Self.read(us, sourceParts.map { ($0, committed[$0]!, ends[$0] ?? 0) })
        var failover = ConsumerConfig()
        failover.groupID = "billing"
        failover.enableAutoCommit = false
        failover.autoOffsetReset = .earliest
        let inEU = KafkaConsumer(cluster: eu, config: failover)
        inEU.assign(remote)
        var got: [String] = []
        let readBy = ContinuousClock.now + .seconds(30)
        let euEnds = try await euAdmin.listOffsets(remote, .latest)
        while ContinuousClock.now < readBy, remote.contains(where: { (inEU.currentPositions[$0] ?? -1) < (euEnds[$0] ?? 0) }) {
            got += try await inEU.poll(timeout: .milliseconds(300)).map { $0.value.map { String(buffer: $0) } ?? "" }
        }
        await inEU.close()
        let already = consumed.values
        let reRead = got.filter { already.contains($0) }.count
        let skipped = Set(rest).subtracting(got).count
        say("  billing consumed \(already.count) orders in us-east; \(rest.count) were left; it read \(got.count) in eu-west")
        say("  re-read \(reRead), skipped \(skipped)")
        guard reRead == 0, skipped == 0, got.count == rest.count else {
            throw ValidationError("the failover was not exact (re-read \(reRead), skipped \(skipped), read \(got.count) of \(rest.count))")
        }

        // 6. Audit.
        steps.step("Auditing the us-east → eu-west copy record by record (meridian audit --flow us-to-eu)")
        let flow = topo.flow("us-to-eu")!
        let result = try await withFlowClusters(flow, topology: topo, base: root) { source, target in
            try await FlowAudit(flow: flow, regions: Set(topo.regions.map(\.name)), source: source, target: target, logger: Logger(label: "meridian.demo")).run()
        }
        let findings = result.partitions.reduce(0) { $0 + $1.counts.values.reduce(0, +) }
        say(result.exact ? "  exact: \(result.checked) records in \(result.partitions.count) partitions, each once, in order and unchanged"
                         : "  NOT exact: \(findings) findings in \(result.checked) records")
        guard result.exact else { throw ValidationError("the audit found \(findings) differences; see `meridian audit --topology \(dir)/topology.json --flow us-to-eu`") }

        // 7. Report.
        steps.step("Writing the HTML lag report")
        let (summary, _) = try await LagGathering.writeReport(topo, base: root, flows: flows, fromClusters: false, out: root + "/lag-report.html")
        say("  " + summary)
        say("  open it: \(root)/lag-report.html")
    }

    /// Produces keyed orders at `rate` per second until stopped; every value is unique.
    static func produce(region: String, cluster: KafkaCluster, rate: Int, stop: Stop) async throws {
        var config = ProducerConfig()
        config.lingerMs = 5
        config.acks = -1
        let producer = KafkaProducer(cluster: cluster, config: config)
        let started = ContinuousClock.now
        var n = 0
        while !stop.isSet {
            let due = Int(Double((ContinuousClock.now - started).components.seconds) * Double(rate)
                          + Double((ContinuousClock.now - started).components.attoseconds) / 1e18 * Double(rate))
            while n < due {
                let customer = "customer-\(n % 97)"
                try await producer.enqueue(topic: "orders", key: ByteBuffer(string: customer),
                                           value: ByteBuffer(string: "order \(region)-\(n) for \(customer): \(1 + n % 9) items"))
                n += 1
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        try await producer.flush()
        await producer.close()
    }

    /// The values of `tp` from `from` up to `end` for each given partition.
    static func read(_ cluster: KafkaCluster, _ ranges: [(TopicPartition, Int64, Int64)]) async throws -> [String] {
        let wanted = ranges.filter { $0.1 < $0.2 }
        guard !wanted.isEmpty else { return [] }
        let c = KafkaConsumer(cluster: cluster, config: ConsumerConfig())
        c.assign(wanted.map(\.0))
        for (tp, from, _) in wanted { c.seek(tp, to: .offset(from)) }
        var out: [String] = []
        let by = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < by, wanted.contains(where: { (c.currentPositions[$0.0] ?? 0) < $0.2 }) {
            for r in try await c.poll(timeout: .milliseconds(300)) {
                if let w = wanted.first(where: { $0.0 == r.topicPartition }), r.offset < w.2 { out.append(r.value.map { String(buffer: $0) } ?? "") }
            }
        }
        await c.close()
        return out
    }

    final class Stop: @unchecked Sendable {
        private let lock = NSLock()
        private var flag = false
        var isSet: Bool { lock.withLock { flag } }
        func set() { lock.withLock { flag = true } }
    }

    final class Consumed: @unchecked Sendable {
        private let lock = NSLock()
        private var set = Set<String>()
        func add(_ r: ConsumerRecord) {
            let v = r.value.map { String(buffer: $0) } ?? ""
            lock.withLock { _ = set.insert(v) }
        }
        var count: Int { lock.withLock { set.count } }
        var values: Set<String> { lock.withLock { set } }
    }

    static func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// The addresses among `addresses` something still accepts connections on.
    static func listening(_ addresses: [String]) -> [String] {
        addresses.filter { a in
            guard let colon = a.lastIndex(of: ":"), let port = Int(a[a.index(after: colon)...]) else { return false }
            return tcpConnectError(host: String(a[..<colon]), port: port, timeoutMs: 1_000) == nil
        }
    }
}
