import Foundation
import KafkaProtocol
import KafkaWire
import NIOCore

/// Drives produce requests against one broker connection with a fixed number in flight.
///
/// Everything runs on the connection's event loop: a completed request records its latency and
/// immediately sends the next one, so the load generator adds no thread hops of its own.
final class ProduceLoad: @unchecked Sendable {
    struct Result {
        var bytes: Int64
        var records: Int64
        var requests: Int
        var seconds: Double
        var latenciesMicros: [UInt32]
        var errors: [String: Int]

        var mbPerSecond: Double { Double(bytes) / seconds / 1_000_000 }
        var recordsPerSecond: Double { Double(records) / seconds }

        func percentile(_ p: Double) -> Double {
            guard !latenciesMicros.isEmpty else { return 0 }
            let sorted = latenciesMicros.sorted()
            return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1000
        }
    }

    let connection: KafkaConnection
    let topic: TopicName
    let partitions: Int32
    let recordSize: Int
    let acks: Int16
    let bytesPerPartitionBatch: Int
    let inFlight: Int
    let duration: Double
    /// Record bytes after which no more requests are sent (nil: until `duration` ends).
    let maxBytes: Int64?
    private var sentBytes: Int64 = 0
    private let payload: ByteBuffer
    private let version: Int16

    private var promise: EventLoopPromise<Result>?
    private var outstanding = 0
    private var deadline = NIODeadline.now()
    private var started = NIODeadline.now()
    private var result = Result(bytes: 0, records: 0, requests: 0, seconds: 0, latenciesMicros: [], errors: [:])
    private var nextPartition: Int32 = 0

    init(connection: KafkaConnection, topic: TopicName, partitions: Int32, recordSize: Int, acks: Int16,
         bytesPerRequest: Int, inFlight: Int, duration: Double, maxBytes: Int64? = nil) throws {
        self.connection = connection
        self.topic = topic
        self.partitions = partitions
        self.recordSize = recordSize
        self.acks = acks
        // Stay under the default max.message.bytes (1048588) like librdkafka's batch.size (1000000).
        self.bytesPerPartitionBatch = min(900_000, max(recordSize, bytesPerRequest / Int(partitions)))
        self.inFlight = inFlight
        self.duration = duration
        self.maxBytes = maxBytes
        var g = SystemRandomNumberGenerator()
        payload = ByteBuffer(bytes: (0..<recordSize).map { _ in UInt8.random(in: 0...255, using: &g) })
        version = try connection.version(for: ProduceRequest.self)
    }

    func run() -> EventLoopFuture<Result> {
        let loop = connection.eventLoop
        return loop.flatSubmit {
            let p = loop.makePromise(of: Result.self)
            self.promise = p
            self.started = .now()
            self.deadline = self.started + .nanoseconds(Int64(self.duration * 1e9))
            self.result.latenciesMicros.reserveCapacity(100_000)
            for _ in 0..<self.inFlight where self.sentBytes < self.maxBytes ?? .max { self.sendOne() }
            return p.futureResult
        }
    }

    private func buildRequest() -> (ProduceRequest, Int64, Int64) {
        var req = ProduceRequest()
        req.acks = acks
        req.timeoutMs = 30_000
        var partitionData: [ProduceRequest.PartitionProduceData] = []
        var bytes: Int64 = 0, records: Int64 = 0
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let perBatch = max(1, bytesPerPartitionBatch / (recordSize + 8))
        for p in 0..<partitions {
            var b = RecordBatchBuilder(capacity: perBatch * (recordSize + 12) + 64)
            for _ in 0..<perBatch { b.append(key: nil, value: payload, timestamp: now) }
            let batch = try! b.build()
            partitionData.append(.init(index: p, records: .bytes(batch)))
            bytes += Int64(perBatch * recordSize)
            records += Int64(perBatch)
        }
        req.topicData = [.init(name: topic, partitionData: partitionData)]
        return (req, bytes, records)
    }

    private func sendOne() {
        let (req, bytes, records) = buildRequest()
        let frame: ByteBuffer
        do {
            frame = try KafkaConnection.encodeFrame(req, version: version, clientID: "meridian-bench")
        } catch {
            promise?.fail(error)
            return
        }
        outstanding += 1
        sentBytes += bytes
        let t0 = NIODeadline.now()
        connection.sendFrame(frame).whenComplete { r in
            self.outstanding -= 1
            let now = NIODeadline.now()
            switch r {
            case .success(var payload):
                if ProduceResponse.responseHeaderVersion(self.version) >= 1 { _ = try? payload.readTaggedFields() }
                if let resp = try? ProduceResponse(from: &payload, version: self.version) {
                    var failed = false
                    for t in resp.responses {
                        for p in t.partitionResponses where p.errorCode != .none {
                            self.result.errors[p.errorCode.name, default: 0] += 1
                            failed = true
                        }
                    }
                    if !failed {
                        self.result.bytes += bytes
                        self.result.records += records
                        self.result.requests += 1
                        self.result.latenciesMicros.append(UInt32(clamping: (now - t0).nanoseconds / 1000))
                    }
                } else {
                    self.result.errors["undecodable response", default: 0] += 1
                }
            case .failure(let e):
                self.result.errors["\(e)", default: 0] += 1
            }
            if now < self.deadline && self.sentBytes < self.maxBytes ?? .max && self.result.errors.values.reduce(0, +) < 100 {
                self.sendOne()
            } else if self.outstanding == 0 {
                self.result.seconds = Double((now - self.started).nanoseconds) / 1e9
                self.promise?.succeed(self.result)
                self.promise = nil
            }
        }
    }
}
