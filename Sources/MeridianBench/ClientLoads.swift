import Foundation
import KafkaClient
import KafkaProtocol
import NIOConcurrencyHelpers
import NIOCore

extension BenchRunner {
    /// Produce load through ``KafkaProducer``: records are handed over one by one, as an application
    /// would; the producer batches them.
    func clientProduce(topic: TopicName, recordSize: Int, acks: Int16, seconds: Double) async throws -> ProduceLoad.Result {
        var config = ProducerConfig()
        config.acks = acks
        config.enableIdempotence = acks == -1
        config.lingerMs = 5
        config.batchSize = 512 * 1024
        config.bufferMemory = 32 << 20
        let producer = KafkaProducer(cluster: clientCluster, config: config)
        var g = SystemRandomNumberGenerator()
        let value = ByteBuffer(bytes: (0..<recordSize).map { _ in UInt8.random(in: 0...255, using: &g) })
        let latencies = NIOLockedValueBox<[UInt32]>([])
        latencies.withLockedValue { $0.reserveCapacity(1 << 20) }
        let errors = NIOLockedValueBox<[String: Int]>([:])
        let acked = ManagedCounter()
        let start = ContinuousClock.now
        let stop = start + .milliseconds(Int64(seconds * 1000))
        var sent: Int64 = 0
        while ContinuousClock.now < stop {
            for _ in 0..<256 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try await producer.enqueue(topic: topic, value: value) { r in
                    switch r {
                    case .success:
                        acked.add(1)
                        let us = UInt32(clamping: (DispatchTime.now().uptimeNanoseconds - t0) / 1000)
                        latencies.withLockedValue { $0.append(us) }
                    case .failure(let e):
                        errors.withLockedValue { $0["\(e)", default: 0] += 1 }
                    }
                }
                sent += 1
            }
        }
        try? await producer.flush()
        let elapsed = ContinuousClock.now - start
        let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        await producer.close()
        let n = Int64(acked.value)
        return ProduceLoad.Result(bytes: n * Int64(recordSize), records: n, requests: 0, seconds: secs,
                                  latenciesMicros: latencies.withLockedValue { $0 }, errors: errors.withLockedValue { $0 })
    }

    /// Consume load through ``KafkaConsumer``: reads the topic from the beginning, record by record,
    /// re-reading from the start when it reaches the end.
    func clientConsume(topic: TopicName, partitions: Int32, partitionMaxBytes: Int32, seconds: Double) async throws -> FetchLoad.Result {
        var config = ConsumerConfig()
        config.maxPartitionFetchBytes = partitionMaxBytes
        config.fetchMaxBytes = 16 << 20
        config.checkCRCs = false
        let consumer = KafkaConsumer(cluster: clientCluster, config: config)
        let tps = (0..<partitions).map { TopicPartition(topic, $0) }
        consumer.assign(tps)
        let admin = KafkaAdmin(cluster: clientCluster)
        let starts = try await admin.listOffsets(tps, .earliest)
        let ends = try await admin.listOffsets(tps, .latest)
        for tp in tps { consumer.seek(tp, to: .offset(starts[tp] ?? 0)) }
        var bytes: Int64 = 0, records: Int64 = 0
        let start = ContinuousClock.now
        let stop = start + .milliseconds(Int64(seconds * 1000))
        while ContinuousClock.now < stop {
            let batch = try await consumer.poll(timeout: .milliseconds(200))
            for r in batch {
                bytes += Int64(r.value?.readableBytes ?? 0) + Int64(r.key?.readableBytes ?? 0)
                records += 1
            }
            let pos = consumer.currentPositions
            for tp in tps where (pos[tp] ?? 0) >= (ends[tp] ?? 0) { consumer.seek(tp, to: .offset(starts[tp] ?? 0)) }
        }
        let elapsed = ContinuousClock.now - start
        await consumer.close()
        return FetchLoad.Result(bytes: bytes, records: records, requests: 0,
                                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
}

extension BenchRunner {
    /// Sends `recordsPerSecond` records (each starting with its send time) for `seconds` and
    /// measures, per record, the time until a consumer of the same process receives it.
    func clientEndToEnd(topic: TopicName, recordSize: Int, acks: Int16, recordsPerSecond: Int,
                        seconds: Double) async throws -> ProduceLoad.Result {
        var pconfig = ProducerConfig()
        pconfig.acks = acks
        pconfig.enableIdempotence = acks == -1
        pconfig.lingerMs = 0
        let producer = KafkaProducer(cluster: clientCluster, config: pconfig)
        var cconfig = ConsumerConfig()
        cconfig.fetchMaxWaitMs = 500
        cconfig.checkCRCs = false
        let consumer = KafkaConsumer(cluster: clientCluster, config: cconfig)
        let tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, to: .latest)
        _ = try await consumer.poll(timeout: .milliseconds(100))
        let total = max(1, Int(Double(recordsPerSecond) * seconds))
        let padding = [UInt8](repeating: 0x45, count: max(0, recordSize - 8))
        let sender = Task {
            let start = DispatchTime.now().uptimeNanoseconds
            for i in 0..<total {
                let due = start + UInt64(i) * 1_000_000_000 / UInt64(recordsPerSecond)
                let now = DispatchTime.now().uptimeNanoseconds
                if due > now { try await Task.sleep(nanoseconds: due - now) }
                var value = ByteBuffer()
                value.writeInteger(DispatchTime.now().uptimeNanoseconds)
                value.writeBytes(padding)
                try await producer.enqueue(topic: topic, value: value, partition: 0)
            }
            try await producer.flush()
        }
        var latencies: [UInt32] = []
        latencies.reserveCapacity(total)
        let started = ContinuousClock.now
        let deadline = started + .milliseconds(Int64(seconds * 1000) + 10_000)
        while latencies.count < total && ContinuousClock.now < deadline {
            for r in try await consumer.poll(timeout: .milliseconds(200)) {
                guard let sentAt = r.value?.getInteger(at: r.value!.readerIndex, as: UInt64.self) else { continue }
                latencies.append(UInt32(clamping: (DispatchTime.now().uptimeNanoseconds &- sentAt) / 1000))
            }
        }
        try await sender.value
        let elapsed = ContinuousClock.now - started
        await producer.close()
        await consumer.close()
        let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return ProduceLoad.Result(bytes: Int64(latencies.count * recordSize), records: Int64(latencies.count), requests: 0,
                                  seconds: secs, latenciesMicros: latencies, errors: [:])
    }
}
