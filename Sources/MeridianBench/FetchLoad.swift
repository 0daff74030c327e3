import Foundation
import KafkaProtocol
import KafkaWire
import NIOCore

/// Reads a topic from offset 0 to its end over and over with fetch requests, the way a consumer
/// does: one request outstanding, the next one starting at the offset after the last whole batch.
/// Only batch headers are walked (no CRC check), like librdkafka's default `check.crcs=false`.
final class FetchLoad: @unchecked Sendable {
    struct Result {
        var bytes: Int64
        var records: Int64
        var requests: Int
        var seconds: Double
        var mbPerSecond: Double { Double(bytes) / seconds / 1_000_000 }
        var recordsPerSecond: Double { Double(records) / seconds }
    }

    let connection: KafkaConnection
    let topic: TopicName
    let partitions: Int32
    let partitionMaxBytes: Int32
    let duration: Double
    private let version: Int16
    private var offsets: [Int64]
    private var promise: EventLoopPromise<Result>?
    private var deadline = NIODeadline.now()
    private var started = NIODeadline.now()
    private var result = Result(bytes: 0, records: 0, requests: 0, seconds: 0)

    init(connection: KafkaConnection, topic: TopicName, partitions: Int32, partitionMaxBytes: Int32, duration: Double) throws {
        self.connection = connection
        self.topic = topic
        self.partitions = partitions
        self.partitionMaxBytes = partitionMaxBytes
        self.duration = duration
        self.offsets = Array(repeating: 0, count: Int(partitions))
        version = try connection.version(for: FetchRequest.self)
    }

    func run() -> EventLoopFuture<Result> {
        let loop = connection.eventLoop
        return loop.flatSubmit {
            let p = loop.makePromise(of: Result.self)
            self.promise = p
            self.started = .now()
            self.deadline = self.started + .nanoseconds(Int64(self.duration * 1e9))
            self.fetchNext()
            return p.futureResult
        }
    }

    private func fetchNext() {
        var req = FetchRequest()
        req.replicaID = -1
        req.maxWaitMs = 100
        req.minBytes = 1
        req.maxBytes = 64 << 20
        req.isolationLevel = 0
        req.topics = [.init(topic: topic, partitions: (0..<partitions).map {
            .init(partition: $0, fetchOffset: offsets[Int($0)], partitionMaxBytes: partitionMaxBytes)
        })]
        connection.send(req, version: version).whenComplete { r in
            switch r {
            case .success(let resp):
                self.result.requests += 1
                for t in resp.responses {
                    for p in t.partitions {
                        let i = Int(p.partitionIndex)
                        guard p.errorCode == .none, case .bytes(let records)? = p.records else { continue }
                        var last = self.offsets[i]
                        for (h, _) in RecordBatch.batches(in: records) where h.nextOffset > last {
                            self.result.bytes += Int64(h.totalSize)
                            self.result.records += Int64(h.recordsCount)
                            last = h.nextOffset
                        }
                        self.offsets[i] = last >= p.highWatermark ? 0 : last
                    }
                }
                if NIODeadline.now() < self.deadline {
                    self.fetchNext()
                } else {
                    self.result.seconds = Double((NIODeadline.now() - self.started).nanoseconds) / 1e9
                    self.promise?.succeed(self.result)
                }
            case .failure(let e):
                self.promise?.fail(e)
            }
        }
    }
}
