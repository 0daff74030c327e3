import Foundation
import Topology

/// What `meridian lag` shows: the partitions of the mirrors' `/lag` answers, worst first, and the
/// flows' lag objectives they miss.
public struct LagReport: Sendable, Equatable {
    /// One partition as a mirror's `/lag` reports it.
    public struct Row: Codable, Sendable, Equatable {
        public var flow: String
        public var source: String
        public var target: String
        public var topic: String
        public var partition: Int
        public var remoteTopic: String
        public var lagRecords: Int64
        public var lagSeconds: Double
        public var state: String
        public var transferP50Seconds: Double?
        public var transferP99Seconds: Double?

        public init(flow: String, source: String, target: String, topic: String, partition: Int, remoteTopic: String, lagRecords: Int64,
                    lagSeconds: Double, state: String, transferP50Seconds: Double?, transferP99Seconds: Double?) {
            self.flow = flow
            self.source = source
            self.target = target
            self.topic = topic
            self.partition = partition
            self.remoteTopic = remoteTopic
            self.lagRecords = lagRecords
            self.lagSeconds = lagSeconds
            self.state = state
            self.transferP50Seconds = transferP50Seconds
            self.transferP99Seconds = transferP99Seconds
        }
    }

    public struct Violation: Sendable, Equatable, CustomStringConvertible {
        public var flow: String
        public var topic: String
        public var partition: Int
        public var what: String
        public var description: String { "\(flow) \(topic)-\(partition): \(what)" }
    }

    /// A flow's link health: seconds since its newest source heartbeat crossed (nil before one did).
    public struct FlowHeartbeat: Codable, Sendable, Equatable {
        public var name: String
        public var heartbeatAgeSeconds: Double?
        public init(name: String, heartbeatAgeSeconds: Double?) {
            self.name = name
            self.heartbeatAgeSeconds = heartbeatAgeSeconds
        }
    }

    public var rows: [Row]
    public var violations: [Violation]
    public var heartbeats: [FlowHeartbeat] = []

    /// `rows` sorted worst first (seconds, then records), checked against each flow's `slo`.
    public init(rows: [Row], flows: [Topology.Flow]) {
        self.rows = rows.sorted {
            ($0.lagSeconds, $0.lagRecords, $1.flow, $1.topic, $1.partition) > ($1.lagSeconds, $1.lagRecords, $0.flow, $0.topic, $0.partition)
        }
        var violations: [Violation] = []
        let slos = Dictionary(flows.compactMap { f in f.slo.map { (f.name, $0) } }, uniquingKeysWith: { a, _ in a })
        for r in self.rows {
            guard let slo = slos[r.flow] else { continue }
            if let max = slo.maxLagSeconds, r.lagSeconds > max {
                violations.append(.init(flow: r.flow, topic: r.topic, partition: r.partition,
                                        what: String(format: "%.1f s behind, objective %.1f s", r.lagSeconds, max)))
            }
            if let max = slo.maxLagRecords, r.lagRecords > max {
                violations.append(.init(flow: r.flow, topic: r.topic, partition: r.partition,
                                        what: "\(r.lagRecords) records behind, objective \(max)"))
            }
        }
        self.violations = violations
    }

    /// Reads a mirror's `/lag` answer: its partitions and its flows' heartbeat ages.
    public static func parse(lagJSON data: Data) throws -> (rows: [Row], heartbeats: [FlowHeartbeat]) {
        struct Body: Decodable {
            var partitions: [Row]
            var flows: [FlowHeartbeat]?
        }
        let body = try JSONDecoder().decode(Body.self, from: data)
        return (body.partitions, body.flows ?? [])
    }

    /// The terminal table: one line per partition, worst first, violations marked with `!`.
    public func table() -> String {
        let header = ["FLOW", "TOPIC", "PARTITION", "RECORDS BEHIND", "SECONDS BEHIND", "TRANSFER P50", "TRANSFER P99", "STATE"]
        let bad = Set(violations.map { "\($0.flow)\u{0}\($0.topic)\u{0}\($0.partition)" })
        func ms(_ s: Double?) -> String { s.map { String(format: "%.0f ms", $0 * 1000) } ?? "-" }
        let lines = rows.map { r -> [String] in
            let mark = bad.contains("\(r.flow)\u{0}\(r.topic)\u{0}\(r.partition)") ? "!" : ""
            return [r.flow, r.topic, "\(r.partition)", "\(r.lagRecords)\(mark)", String(format: "%.1f", r.lagSeconds) + mark,
                    ms(r.transferP50Seconds), ms(r.transferP99Seconds), r.state]
        }
        var widths = header.map(\.count)
        for l in lines { for (i, c) in l.enumerated() { widths[i] = max(widths[i], c.count) } }
        func render(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                let pad = String(repeating: " ", count: widths[i] - c.count)
                return (2...6).contains(i) ? pad + c : c + pad
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        return ([render(header)] + lines.map(render)).joined(separator: "\n") + "\n"
    }
}
