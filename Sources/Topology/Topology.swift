import Foundation

/// The model of `topology.json`: the regions, their brokers (or, for clusters Meridian does not run,
/// their bootstrap addresses) and the mirror flows between them.
///
/// Unknown keys are ignored when decoding so that a newer file still loads in an older build;
/// ``validate()`` reports what cannot work (duplicate names or ids, port clashes, missing TLS files).
public struct Topology: Codable, Sendable, Equatable {
    /// Schema version of the file; this build reads version 1.
    public var version: Int
    public var regions: [Region]
    /// Mirror flows between regions; empty when nothing is mirrored.
    public var flows: [Flow]

    public init(version: Int = 1, regions: [Region], flows: [Flow] = []) {
        self.version = version
        self.regions = regions
        self.flows = flows
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        regions = try c.decode([Region].self, forKey: .regions)
        flows = try c.decodeIfPresent([Flow].self, forKey: .flows) ?? []
    }

    public struct Region: Codable, Sendable, Equatable {
        public var name: String
        /// The brokers Meridian runs for this region; empty for a region given by `bootstrap`.
        public var brokers: [Broker]
        /// `host:port` addresses of a Kafka-protocol cluster Meridian does not run (Apache Kafka, a
        /// managed service, another Meridian); used instead of `brokers`.
        public var bootstrap: [String]?
        /// TLS material shared by the region's brokers (CA, client-auth policy); brokers add their own cert/key.
        public var tls: TLS?
        /// Settings applied to every broker of the region.
        public var defaults: BrokerDefaults?
        /// `host:port` where this region's mirror serves `/metrics` and `/lag` (what `meridian lag`
        /// reads); `meridian mirror` listens there unless given `--metrics`.
        public var mirrorMetrics: String?

        public init(name: String, brokers: [Broker], bootstrap: [String]? = nil, tls: TLS? = nil, defaults: BrokerDefaults? = nil) {
            self.name = name
            self.brokers = brokers
            self.bootstrap = bootstrap
            self.tls = tls
            self.defaults = defaults
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            brokers = try c.decodeIfPresent([Broker].self, forKey: .brokers) ?? []
            bootstrap = try c.decodeIfPresent([String].self, forKey: .bootstrap)
            tls = try c.decodeIfPresent(TLS.self, forKey: .tls)
            defaults = try c.decodeIfPresent(BrokerDefaults.self, forKey: .defaults)
            mirrorMetrics = try c.decodeIfPresent(String.self, forKey: .mirrorMetrics)
        }
    }

    public struct Broker: Codable, Sendable, Equatable {
        public var id: Int32
        /// `PLAINTEXT://host:port` and/or `SSL://host:port`.
        public var listeners: [String]
        /// Data directory; relative paths are relative to the topology file's directory.
        public var dataDir: String
        /// This broker's certificate and key (and optionally CA / client-auth overrides).
        public var tls: TLS?
        /// `host:port` where the broker serves Prometheus metrics at /metrics (none when absent).
        public var metrics: String?

        public init(id: Int32, listeners: [String], dataDir: String, tls: TLS? = nil, metrics: String? = nil) {
            self.id = id
            self.listeners = listeners
            self.dataDir = dataDir
            self.tls = tls
            self.metrics = metrics
        }
    }

    public struct TLS: Codable, Sendable, Equatable {
        public var ca: String?
        public var cert: String?
        public var key: String?
        /// `required`, `requested` or `none`.
        public var clientAuth: String?

        public init(ca: String? = nil, cert: String? = nil, key: String? = nil, clientAuth: String? = nil) {
            self.ca = ca
            self.cert = cert
            self.key = key
            self.clientAuth = clientAuth
        }

        /// This broker's settings over the region's.
        public func overriding(_ base: TLS?) -> TLS {
            TLS(ca: ca ?? base?.ca, cert: cert ?? base?.cert, key: key ?? base?.key, clientAuth: clientAuth ?? base?.clientAuth)
        }
    }

    public struct BrokerDefaults: Codable, Sendable, Equatable {
        public var partitions: Int32?
        public var autoCreateTopics: Bool?
        /// Default topic configs for topics created in the region (e.g. `retention.ms`).
        public var topicConfigs: [String: String]?

        public init(partitions: Int32? = nil, autoCreateTopics: Bool? = nil, topicConfigs: [String: String]? = nil) {
            self.partitions = partitions
            self.autoCreateTopics = autoCreateTopics
            self.topicConfigs = topicConfigs
        }
    }

    public func region(_ name: String) -> Region? {
        regions.first { $0.name == name }
    }
}

/// A problem in a topology file, phrased for the operator.
public struct TopologyError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Topology {
    /// Loads and decodes a topology file. Relative paths inside stay relative; resolve them with
    /// ``resolve(_:relativeTo:)`` against the file's directory.
    public static func load(path: String) throws -> Topology {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TopologyError("cannot read topology file '\(path)'; pass --topology with the path to topology.json")
        }
        do {
            return try JSONDecoder().decode(Topology.self, from: data)
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw TopologyError("\(path): missing \"\(key.stringValue)\" at \(Self.describe(ctx.codingPath))")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw TopologyError("\(path): wrong type at \(Self.describe(ctx.codingPath)): \(ctx.debugDescription)")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw TopologyError("\(path): not valid JSON (\(ctx.underlyingError.map { "\($0)" } ?? ctx.debugDescription))")
        } catch {
            throw TopologyError("\(path): \(error)")
        }
    }

    private static func describe(_ path: [CodingKey]) -> String {
        path.isEmpty ? "the top level" : path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }

    /// `path` made absolute against `base` unless it already is.
    public static func resolve(_ path: String, relativeTo base: String) -> String {
        path.hasPrefix("/") ? path : (base as NSString).appendingPathComponent(path)
    }

    /// Every problem that would stop the topology from running, empty when it is sound.
    public func validate() -> [String] {
        var problems: [String] = []
        if version != 1 { problems.append("version \(version) is not supported by this build (expected 1)") }
        if regions.isEmpty { problems.append("no regions: add at least one region with one broker") }
        var regionNames = Set<String>()
        var endpoints: [String: String] = [:]
        var dataDirs: [String: String] = [:]
        for r in regions {
            if r.name.isEmpty || r.name.contains(where: { !($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
                problems.append("region name '\(r.name)' must be non-empty and use only letters, digits, '-' and '_'")
            }
            if !regionNames.insert(r.name).inserted { problems.append("region '\(r.name)' is defined twice") }
            if let bootstrap = r.bootstrap {
                if !r.brokers.isEmpty { problems.append("region '\(r.name)' gives both brokers and bootstrap; use brokers for a cluster Meridian runs, bootstrap for one it does not") }
                if bootstrap.isEmpty { problems.append("region '\(r.name)': bootstrap is empty; list at least one host:port") }
                for a in bootstrap {
                    if let colon = a.lastIndex(of: ":"), colon != a.startIndex, let port = Int(a[a.index(after: colon)...]), (1...65535).contains(port) { continue }
                    problems.append("region '\(r.name)': bootstrap entry '\(a)' is not host:port")
                }
            } else if r.brokers.isEmpty {
                problems.append("region '\(r.name)' has no brokers; add brokers, or bootstrap addresses for a cluster Meridian does not run")
            }
            var ids = Set<Int32>()
            for b in r.brokers {
                let who = "region '\(r.name)' broker \(b.id)"
                if !ids.insert(b.id).inserted { problems.append("\(who): broker id \(b.id) is used twice in the region") }
                if b.id < 0 { problems.append("\(who): broker ids must be >= 0") }
                if b.listeners.isEmpty { problems.append("\(who): no listeners") }
                for l in b.listeners {
                    guard let sep = l.range(of: "://"), let colon = l.lastIndex(of: ":"), colon > sep.lowerBound,
                          let port = Int(l[l.index(after: colon)...]) else {
                        problems.append("\(who): listener '\(l)' is not PROTOCOL://HOST:PORT")
                        continue
                    }
                    let proto = l[..<sep.lowerBound].uppercased()
                    if proto != "PLAINTEXT" && proto != "SSL" {
                        problems.append("\(who): listener '\(l)' uses \(proto); only PLAINTEXT and SSL are supported")
                    }
                    if proto == "SSL" {
                        let tls = (b.tls ?? TLS()).overriding(r.tls)
                        if tls.cert == nil || tls.key == nil {
                            problems.append("\(who): SSL listener '\(l)' needs tls.cert and tls.key")
                        }
                    }
                    if port != 0 {
                        let hostPort = "\(l[sep.upperBound..<colon]):\(port)"
                        if let other = endpoints[hostPort] {
                            problems.append("\(who): listener \(hostPort) clashes with \(other)")
                        } else {
                            endpoints[hostPort] = who
                        }
                    }
                }
                if let other = dataDirs[b.dataDir] {
                    problems.append("\(who): dataDir '\(b.dataDir)' is also used by \(other)")
                } else {
                    dataDirs[b.dataDir] = who
                }
                if let auth = (b.tls ?? TLS()).overriding(r.tls).clientAuth, !["required", "requested", "none"].contains(auth) {
                    problems.append("\(who): tls.clientAuth must be required, requested or none, not '\(auth)'")
                }
            }
        }
        problems += validateFlows()
        return problems
    }
}
