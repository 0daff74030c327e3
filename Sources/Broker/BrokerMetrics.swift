import Foundation
import KafkaProtocol
import NIOConcurrencyHelpers
import Prometheus

/// The broker's Prometheus metrics (`meridian broker --metrics HOST:PORT` serves them at /metrics),
/// refreshed from ``BrokerStats``, the logs and the groups when scraped.
///
/// Names, labels and units (documented in the README):
/// - `meridian_broker_requests_total{api}`: requests received, by API (Kafka's name: Produce, Fetch, …).
/// - `meridian_broker_errors_total{api,error}`: error codes answered, partition-level ones included
///   (`error` is Kafka's name, e.g. NOT_LEADER_OR_FOLLOWER).
/// - `meridian_broker_received_bytes_total`, `meridian_broker_sent_bytes_total`: request and response frames.
/// - `meridian_broker_connections_open`: client connections open; `meridian_broker_connections_accepted_total`.
/// - `meridian_broker_log_end_offset`, `meridian_broker_log_start_offset`, `meridian_broker_high_watermark`
///   `{topic,partition}`.
/// - `meridian_broker_group_lag_records{group,topic,partition}`: high watermark − the group's committed offset.
public final class BrokerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let broker: Broker
    /// What the counters showed at the last scrape (counters only go up by the difference).
    private let counted = NIOLockedValueBox<[String: Int]>([:])

    public init(broker: Broker) {
        self.broker = broker
    }

    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "meridian", subsystem: "broker", metricName: metric, unitName: unit, helpText: help)
    }

    /// The Prometheus text exposition of every metric, after refreshing them.
    public func scrape() -> String {
        counted.withLockedValue { last in
            func count(_ d: MetricNameDescriptor, _ labels: [(String, String)], _ value: Int) {
                let key = ([d.metricName] + labels.map { "\($0.0)=\($0.1)" }).joined(separator: "\u{0}")
                let before = last[key] ?? 0
                let counter = registry.makeCounter(descriptor: d, labels: labels)
                if value > before { counter.increment(by: Int64(value - before)) }
                last[key] = max(before, value)
            }
            let stats = broker.stats
            let requests = Self.name("requests", "total", "Requests received, by API")
            for (api, n) in stats.requestsByAPI { count(requests, [("api", api.name)], n) }
            let errors = Self.name("errors", "total", "Error codes answered (partition-level ones included), by API and error")
            for (k, n) in stats.errors { count(errors, [("api", k.api.name), ("error", k.code.name)], n) }
            count(Self.name("received_bytes", "total", "Bytes of request frames received"), [], stats.bytesIn.load(ordering: .relaxed))
            count(Self.name("sent_bytes", "total", "Bytes of response frames sent"), [], stats.bytesOut.load(ordering: .relaxed))
            count(Self.name("connections_accepted", "total", "Client connections accepted"), [], stats.connectionsAccepted.load(ordering: .relaxed))
        }
        registry.makeGauge(descriptor: Self.name("connections", "open", "Client connections open"))
            .set(Double(broker.stats.connectionsOpen.load(ordering: .relaxed)))
        let leo = Self.name("log_end", "offset", "Next offset to be written")
        let start = Self.name("log_start", "offset", "First offset still in the log")
        let hw = Self.name("high", "watermark", "Offset up to which consumers read")
        var highWatermarks: [TopicPartition: Int64] = [:]
        for p in broker.logs.allPartitions {
            let o = p.offsets
            let labels = [("topic", p.topic.rawValue), ("partition", "\(p.index)")]
            registry.makeGauge(descriptor: leo, labels: labels).set(Double(o.logEndOffset))
            registry.makeGauge(descriptor: start, labels: labels).set(Double(o.logStartOffset))
            registry.makeGauge(descriptor: hw, labels: labels).set(Double(o.highWatermark))
            highWatermarks[TopicPartition(p.topic, p.index)] = o.highWatermark
        }
        let lag = Self.name("group_lag", "records", "High watermark minus the group's committed offset")
        for g in broker.groups.listGroups() {
            for (tp, c) in broker.groups.fetchOffsets(g.groupID, nil) {
                guard let h = highWatermarks[tp] else { continue }
                registry.makeGauge(descriptor: lag, labels: [("group", g.groupID.rawValue), ("topic", tp.topic.rawValue), ("partition", "\(tp.partition)")])
                    .set(Double(max(0, h - c.offset)))
            }
        }
        return registry.emitToString()
    }
}
