import Foundation

extension Topology {
    /// One mirror flow: which topics and groups of `source` are copied into `target`, and how remote
    /// topics are named there. The mirror of the target region runs it.
    public struct Flow: Codable, Sendable, Equatable {
        public var name: String
        public var source: String
        public var target: String
        public var topics: Selection
        public var groups: Selection
        /// `prefix` (remote topic `<source>.<topic>`, the default) or `identity` (same name).
        public var naming: Naming
        /// Connect to the source's SSL listener, verify it against the source region's CA and present
        /// the mirror's client certificate.
        public var tls: Bool
        /// The mirror's client certificate and key for mTLS; by default `mirror-<target>.pem` and
        /// `.key` next to the source region's CA (what `deploy/make-certs.sh --client mirror-<target>` writes).
        public var clientCert: String?
        public var clientKey: String?
        /// How often committed group offsets are translated and synced into the target (default 5 s).
        public var groupSyncIntervalMs: Int?
        /// Lag objectives `meridian lag` checks (exit status 2 when one is missed).
        public var slo: SLO?

        public struct SLO: Codable, Sendable, Equatable {
            /// No partition's oldest waiting record may be older than this.
            public var maxLagSeconds: Double?
            /// No partition may have more records waiting than this.
            public var maxLagRecords: Int64?
            public init(maxLagSeconds: Double? = nil, maxLagRecords: Int64? = nil) {
                self.maxLagSeconds = maxLagSeconds
                self.maxLagRecords = maxLagRecords
            }
        }

        public enum Naming: String, Codable, Sendable, Equatable {
            case prefix, identity
        }

        /// Regular expressions matched against whole names; a name is selected when some include
        /// pattern matches it and no exclude pattern does.
        public struct Selection: Codable, Sendable, Equatable {
            public var include: [String]
            public var exclude: [String]

            public init(include: [String] = [".*"], exclude: [String] = []) {
                self.include = include
                self.exclude = exclude
            }

            public init(from decoder: Decoder) throws {
                let c = try decoder.container(keyedBy: CodingKeys.self)
                include = try c.decodeIfPresent([String].self, forKey: .include) ?? [".*"]
                exclude = try c.decodeIfPresent([String].self, forKey: .exclude) ?? []
            }
        }

        public init(name: String, source: String, target: String, topics: Selection = Selection(), groups: Selection = Selection(),
                    naming: Naming = .prefix, tls: Bool = false, clientCert: String? = nil, clientKey: String? = nil,
                    groupSyncIntervalMs: Int? = nil) {
            self.name = name
            self.source = source
            self.target = target
            self.topics = topics
            self.groups = groups
            self.naming = naming
            self.tls = tls
            self.clientCert = clientCert
            self.clientKey = clientKey
            self.groupSyncIntervalMs = groupSyncIntervalMs
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            source = try c.decode(String.self, forKey: .source)
            target = try c.decode(String.self, forKey: .target)
            topics = try c.decodeIfPresent(Selection.self, forKey: .topics) ?? Selection()
            groups = try c.decodeIfPresent(Selection.self, forKey: .groups) ?? Selection()
            naming = try c.decodeIfPresent(Naming.self, forKey: .naming) ?? .prefix
            tls = try c.decodeIfPresent(Bool.self, forKey: .tls) ?? false
            clientCert = try c.decodeIfPresent(String.self, forKey: .clientCert)
            clientKey = try c.decodeIfPresent(String.self, forKey: .clientKey)
            groupSyncIntervalMs = try c.decodeIfPresent(Int.self, forKey: .groupSyncIntervalMs)
            slo = try c.decodeIfPresent(SLO.self, forKey: .slo)
        }
    }

    public func flow(_ name: String) -> Flow? {
        flows.first { $0.name == name }
    }

    /// Problems in `flows`, phrased with the flow's position in the file and what to change.
    func validateFlows() -> [String] {
        var problems: [String] = []
        var names = Set<String>()
        var pairs: [String: String] = [:]
        for (i, f) in flows.enumerated() {
            let who = "flows[\(i)] '\(f.name)'"
            if f.name.isEmpty || f.name.contains(where: { !($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }) {
                problems.append("\(who): a flow name must be non-empty and use only letters, digits, '-', '_' and '.'")
            }
            if !names.insert(f.name).inserted { problems.append("\(who): another flow has the same name; names must be unique") }
            for (field, region) in [("source", f.source), ("target", f.target)] where self.region(region) == nil {
                problems.append("\(who): \(field) region '\(region)' is not defined; known regions: \(regions.map(\.name).joined(separator: ", "))")
            }
            if f.source == f.target { problems.append("\(who): source and target are both '\(f.source)'; a flow copies between two regions") }
            if let slo = f.slo {
                if let s = slo.maxLagSeconds, !(s > 0) { problems.append("\(who): slo.maxLagSeconds must be a positive number of seconds") }
                if let r = slo.maxLagRecords, r < 0 { problems.append("\(who): slo.maxLagRecords must be 0 or more") }
            }
            let pair = "\(f.source)->\(f.target)"
            if let other = pairs[pair] {
                problems.append("\(who): \(other) already copies \(f.source) into \(f.target); two flows between the same regions would both write the same remote partitions — merge their topic patterns into one flow")
            } else {
                pairs[pair] = who
            }
            for (kind, sel) in [("topics", f.topics), ("groups", f.groups)] {
                for p in sel.include + sel.exclude where (try? NSRegularExpression(pattern: p)) == nil {
                    problems.append("\(who): \(kind) pattern '\(p)' is not a valid regular expression")
                }
                if sel.include.isEmpty, kind == "topics" { problems.append("\(who): topics.include is empty, so nothing would be mirrored") }
            }
            if f.tls, let src = region(f.source) {
                if src.bootstrap == nil && !src.brokers.contains(where: { $0.listeners.contains { $0.uppercased().hasPrefix("SSL://") } }) {
                    problems.append("\(who): tls is true but region '\(f.source)' has no SSL listener; add one or set \"tls\": false")
                }
                if src.tls?.ca == nil {
                    problems.append("\(who): tls is true but region '\(f.source)' has no tls.ca to verify its brokers against")
                }
            }
            if (f.clientCert == nil) != (f.clientKey == nil) {
                problems.append("\(who): give both clientCert and clientKey, or neither")
            }
            if let ms = f.groupSyncIntervalMs, ms < 100 {
                problems.append("\(who): groupSyncIntervalMs \(ms) is below 100 ms")
            }
        }
        problems += flowCycles()
        return problems
    }

    /// Cycles in the flow graph that would send records back to where they came from. Prefix naming
    /// and identity naming each stop loops on their own (a region prefix chain, a provenance header);
    /// a cycle that mixes them does not, because a prefixed copy of an identity topic no longer
    /// carries the name that says where its records came from.
    func flowCycles() -> [String] {
        var out: [String] = []
        var edges: [String: [Flow]] = [:]
        for f in flows { edges[f.source, default: []].append(f) }
        var reported = Set<String>()
        // Depth-first search from every region; a path that returns to its start is a cycle.
        func walk(_ start: String, _ at: String, _ path: [Flow]) {
            for f in edges[at] ?? [] {
                if f.target == start {
                    let cycle = path + [f]
                    let namings = Set(cycle.map(\.naming))
                    let key = cycle.map(\.name).sorted().joined(separator: ",")
                    if namings.count > 1 && reported.insert(key).inserted {
                        out.append("flows \(cycle.map { "'\($0.name)'" }.joined(separator: " → ")) form a cycle that mixes prefix and identity naming, so records would return to their origin; use one naming for every flow of the cycle")
                    }
                } else if !path.contains(where: { $0.source == f.target }) && f.target != at {
                    walk(start, f.target, path + [f])
                }
            }
        }
        for r in regions { walk(r.name, r.name, []) }
        return out
    }
}
