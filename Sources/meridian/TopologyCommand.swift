import ArgumentParser
import Foundation
import Topology

struct TopologyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topology",
        abstract: "Inspect topology.json.",
        subcommands: [Check.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a topology file and summarise it.",
            discussion: """
                Reports every problem that would stop `meridian up` or `meridian mirror`, each as \
                FILE:LINE:COLUMN with the JSON path of the value and what to change: duplicate ids, \
                listener ports used twice (across regions too), SSL listeners without certificates, \
                certificate, key or CA files that do not exist, unknown client-auth modes, flows \
                between unknown regions, bad topic patterns, TLS flows to regions without an SSL \
                listener or CA, flow cycles that mix prefix and identity naming. With --connect it also \
                tries every bootstrap address of regions Meridian does not run. Exit status 1 if any.

                Examples:
                  meridian topology check --topology topology.json
                  meridian topology check --topology /etc/meridian/topology.json --connect
                """
        )

        @Option(help: "Path of the topology file.")
        var topology: String = "topology.json"

        @Flag(help: "Also connect to every bootstrap address of external regions (3 s each).")
        var connect = false

        func run() throws {
            let text: String
            do {
                text = try String(contentsOfFile: topology, encoding: .utf8)
            } catch {
                throw ValidationError("cannot read \(topology): \(error.localizedDescription)")
            }
            let topo = try Topology.load(path: topology)
            let positions = JSONPositions(text)
            let base = (topology as NSString).deletingLastPathComponent
            var problems: [(path: String, message: String)] = topo.validate().map { (topo.path(ofProblem: $0), $0) }
            problems += Self.missingFiles(topo, base: base)
            if connect { problems += Self.unreachable(topo) }
            for r in topo.regions {
                if let bootstrap = r.bootstrap {
                    say("region \(r.name): external cluster at \(bootstrap.joined(separator: ", "))")
                    continue
                }
                say("region \(r.name): \(r.brokers.count) broker(s)")
                for b in r.brokers { say("  broker \(b.id): \(b.listeners.joined(separator: ", "))  data: \(b.dataDir)") }
            }
            for f in topo.flows {
                say("flow \(f.name): \(f.source) → \(f.target), topics \(f.topics.include.joined(separator: "|"))\(f.topics.exclude.isEmpty ? "" : " except \(f.topics.exclude.joined(separator: "|"))"), \(f.naming.rawValue) naming\(f.tls ? ", TLS" : "")")
            }
            if problems.isEmpty {
                say("\(topology): OK")
            } else {
                for p in problems {
                    let at = positions.position(of: p.path).map { ":\($0.line):\($0.column)" } ?? ""
                    printError("\(topology)\(at): problem: \(p.message)" + (p.path.isEmpty ? "" : " (at \(p.path))"))
                }
                printError("\(problems.count) problem(s)")
                throw ExitCode(1)
            }
        }

        /// Certificate, key and CA files the topology names that do not exist.
        static func missingFiles(_ topo: Topology, base: String) -> [(path: String, message: String)] {
            var out: [(String, String)] = []
            var reported = Set<String>()
            func check(_ file: String?, _ path: String, _ what: String, fix: String) {
                guard let file, !reported.contains(path) else { return }
                let full = Topology.resolve(file, relativeTo: base)
                if !FileManager.default.fileExists(atPath: full) {
                    reported.insert(path)
                    out.append((path, "\(what) \(file) does not exist (\(full)); \(fix)"))
                }
            }
            for (ri, r) in topo.regions.enumerated() {
                let certDir = r.tls?.ca.map { ($0 as NSString).deletingLastPathComponent } ?? "certs"
                check(r.tls?.ca, "regions[\(ri)].tls.ca", "CA file", fix: "run deploy/make-certs.sh --out \(certDir) (meridian up does it for you) or point tls.ca at your CA")
                for (bi, b) in r.brokers.enumerated() where b.listeners.contains(where: { $0.uppercased().hasPrefix("SSL://") }) {
                    let t = (b.tls ?? Topology.TLS()).overriding(r.tls)
                    let inBroker = b.tls?.cert != nil
                    let name = t.cert.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension } ?? "broker"
                    let fix = "run deploy/make-certs.sh --out \(certDir) \(name) (meridian up does it for you)"
                    check(t.cert, inBroker ? "regions[\(ri)].brokers[\(bi)].tls.cert" : "regions[\(ri)].tls.cert", "certificate", fix: fix)
                    check(t.key, inBroker ? "regions[\(ri)].brokers[\(bi)].tls.key" : "regions[\(ri)].tls.key", "key", fix: fix)
                }
            }
            for (fi, f) in topo.flows.enumerated() where f.tls {
                check(f.clientCert, "flows[\(fi)].clientCert", "client certificate", fix: "create it with deploy/make-certs.sh --client NAME or remove clientCert to use mirror-\(f.target).pem")
                check(f.clientKey, "flows[\(fi)].clientKey", "client key", fix: "create it with deploy/make-certs.sh --client NAME or remove clientKey to use mirror-\(f.target).key")
            }
            return out
        }

        /// Bootstrap addresses of external regions that do not accept a TCP connection within 3 s.
        static func unreachable(_ topo: Topology) -> [(path: String, message: String)] {
            var out: [(String, String)] = []
            for (ri, r) in topo.regions.enumerated() {
                for (ai, a) in (r.bootstrap ?? []).enumerated() {
                    guard let colon = a.lastIndex(of: ":"), let port = Int(a[a.index(after: colon)...]) else { continue }
                    let host = String(a[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
                    if let why = tcpConnectError(host: host, port: port, timeoutMs: 3_000) {
                        out.append(("regions[\(ri)].bootstrap[\(ai)]", "region '\(r.name)': bootstrap \(a) does not answer (\(why)); check the address, the firewall, and that the cluster runs"))
                    }
                }
            }
            return out
        }
    }
}

/// nil when a TCP connection to host:port opens within the timeout, else why not.
func tcpConnectError(host: String, port: Int, timeoutMs: Int32) -> String? {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var list: UnsafeMutablePointer<addrinfo>?
    let rc = getaddrinfo(host, String(port), &hints, &list)
    guard rc == 0, let first = list else { return "cannot resolve \(host): \(String(cString: gai_strerror(rc)))" }
    defer { freeaddrinfo(list) }
    var why = "no address"
    var ai: UnsafeMutablePointer<addrinfo>? = first
    while let a = ai {
        defer { ai = a.pointee.ai_next }
        let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
        guard fd >= 0 else { continue }
        defer { close(fd) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        if connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return nil }
        guard errno == EINPROGRESS else {
            why = String(cString: strerror(errno))
            continue
        }
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&p, 1, timeoutMs) == 1 else {
            why = "no answer within \(timeoutMs / 1000) s"
            continue
        }
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        if err == 0 { return nil }
        why = String(cString: strerror(err))
    }
    return why
}
