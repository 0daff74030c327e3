import Foundation
import Prometheus

/// The mirror's Prometheus metrics, refreshed from its flows' lag status when scraped.
///
/// Names, labels and units (documented in the README):
/// - `meridian_mirror_lag_records{flow,topic,partition}`: records in the source not yet in the target.
/// - `meridian_mirror_lag_seconds{flow,topic,partition}`: age of the oldest record not yet copied.
/// - `meridian_mirror_source_high_watermark{flow,topic,partition}`: last source high watermark seen.
/// - `meridian_mirror_copied_offset{flow,topic,partition}`: next source offset to copy.
/// - `meridian_mirror_copied_records_total`, `meridian_mirror_copied_bytes_total{flow,topic,partition}`.
/// - `meridian_mirror_transfer_seconds{flow,topic,partition,quantile="0.5"|"0.99"}`: fetched → written
///   in the target, over the last 1024 batches.
/// - `meridian_mirror_partition_state{flow,topic,partition,state}`: 1 for the partition's state, 0 for the others.
/// - `meridian_mirror_heartbeat_age_seconds{flow}`: time since the newest source heartbeat that crossed
///   the flow was written (grows while the link or the mirror stalls, even with no data to copy).
public final class MirrorMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let flows: @Sendable () -> [FlowMirror]
    private let lock = NSLock()
    private nonisolated(unsafe) var counted: [String: (records: Int64, bytes: Int64)] = [:]

    public init(flows: @escaping @Sendable () -> [FlowMirror]) {
        self.flows = flows
    }

    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "meridian", subsystem: "mirror", metricName: metric, unitName: unit, helpText: help)
    }
    private static var lagRecords: MetricNameDescriptor { name("lag", "records", "Records in the source not yet in the target") }
    private static var lagSeconds: MetricNameDescriptor { name("lag", "seconds", "Age of the oldest record not yet copied") }
    private static var sourceHighWatermark: MetricNameDescriptor { name("source_high", "watermark", "Last source high watermark seen") }
    private static var copiedOffset: MetricNameDescriptor { name("copied", "offset", "Next source offset to copy") }
    private static var copiedRecords: MetricNameDescriptor { name("copied_records", "total", "Records copied") }
    private static var copiedBytes: MetricNameDescriptor { name("copied_bytes", "total", "Bytes of batches copied") }
    private static var transfer: MetricNameDescriptor { name("transfer", "seconds", "Time from fetching a batch to its acknowledgement by the target") }
    private static var state: MetricNameDescriptor { name("partition", "state", "1 for the partition's current state") }
    private static var heartbeat: MetricNameDescriptor { name("heartbeat_age", "seconds", "Time since the newest source heartbeat that crossed the flow was written") }

    /// The Prometheus text exposition of every metric, after refreshing them.
    public func scrape() -> String {
        lock.lock()
        defer { lock.unlock() }
        for flow in flows() {
            if let age = flow.heartbeatAgeMs() {
                registry.makeGauge(descriptor: Self.heartbeat, labels: [("flow", flow.flow.name)]).set(Double(age) / 1000)
            }
            for s in flow.lagStatus() {
                let labels = [("flow", flow.flow.name), ("topic", s.source.topic.rawValue), ("partition", "\(s.source.partition)")]
                registry.makeGauge(descriptor: Self.lagRecords, labels: labels).set(Double(s.lagRecords))
                registry.makeGauge(descriptor: Self.lagSeconds, labels: labels).set(Double(s.lagMs) / 1000)
                registry.makeGauge(descriptor: Self.sourceHighWatermark, labels: labels).set(Double(s.sourceHighWatermark))
                registry.makeGauge(descriptor: Self.copiedOffset, labels: labels).set(Double(s.copiedNext))
                let key = labels.map(\.1).joined(separator: "\u{0}")
                let before = counted[key] ?? (0, 0)
                if s.copiedRecords > before.records {
                    registry.makeCounter(descriptor: Self.copiedRecords, labels: labels).increment(by: s.copiedRecords - before.records)
                }
                if s.copiedBytes > before.bytes {
                    registry.makeCounter(descriptor: Self.copiedBytes, labels: labels).increment(by: s.copiedBytes - before.bytes)
                }
                counted[key] = (max(before.records, s.copiedRecords), max(before.bytes, s.copiedBytes))
                for (q, v) in [("0.5", s.transferP50Ms), ("0.99", s.transferP99Ms)] {
                    registry.makeGauge(descriptor: Self.transfer, labels: labels + [("quantile", q)]).set(Double(v ?? 0) / 1000)
                }
                for state in [PartitionLagStatus.State.running, .stalled, .reconnecting, .sourceUnreachable, .stopped] {
                    registry.makeGauge(descriptor: Self.state, labels: labels + [("state", state.rawValue)]).set(s.state == state ? 1.0 : 0.0)
                }
            }
        }
        return registry.emitToString()
    }

    /// The lag of every partition of every flow, as `meridian lag` and the history take it.
    public func lagRows() -> [LagReport.Row] {
        flows().flatMap { flow in
            flow.lagStatus().map { s in
                LagReport.Row(flow: flow.flow.name, source: flow.flow.source, target: flow.flow.target, topic: s.source.topic.rawValue,
                              partition: Int(s.source.partition), remoteTopic: s.target.topic.rawValue, lagRecords: s.lagRecords,
                              lagSeconds: Double(s.lagMs) / 1000, state: s.state.rawValue,
                              transferP50Seconds: s.transferP50Ms.map { Double($0) / 1000 }, transferP99Seconds: s.transferP99Ms.map { Double($0) / 1000 })
            }
        }
    }

    /// The lag of every partition of every flow as JSON (the `/lag` endpoint), worst first.
    public func lagJSON() throws -> Data {
        var rows: [[String: Any]] = []
        var flowRows: [[String: Any]] = []
        for flow in flows() {
            var f: [String: Any] = ["name": flow.flow.name, "source": flow.flow.source, "target": flow.flow.target]
            if let age = flow.heartbeatAgeMs() { f["heartbeatAgeSeconds"] = Double(age) / 1000 }
            flowRows.append(f)
            for s in flow.lagStatus() {
                var row: [String: Any] = [
                    "flow": flow.flow.name, "source": flow.flow.source, "target": flow.flow.target,
                    "topic": s.source.topic.rawValue, "partition": Int(s.source.partition), "remoteTopic": s.target.topic.rawValue,
                    "sourceHighWatermark": s.sourceHighWatermark, "copiedOffset": s.copiedNext,
                    "lagRecords": s.lagRecords, "lagSeconds": Double(s.lagMs) / 1000, "state": s.state.rawValue,
                    "copiedRecords": s.copiedRecords, "copiedBytes": s.copiedBytes,
                ]
                if let v = s.transferP50Ms { row["transferP50Seconds"] = Double(v) / 1000 }
                if let v = s.transferP99Ms { row["transferP99Seconds"] = Double(v) / 1000 }
                if let v = s.dwellP50Ms { row["dwellP50Seconds"] = Double(v) / 1000 }
                if let why = s.stopped { row["stoppedBecause"] = why }
                rows.append(row)
            }
        }
        rows.sort { ($0["lagSeconds"] as? Double ?? 0, $0["lagRecords"] as? Int64 ?? 0) > ($1["lagSeconds"] as? Double ?? 0, $1["lagRecords"] as? Int64 ?? 0) }
        return try JSONSerialization.data(withJSONObject: ["partitions": rows, "flows": flowRows], options: [.sortedKeys])
    }
}
