import KafkaProtocol
import KafkaWire
import NIOCore
import Testing
@testable import KafkaClient

/// The producer's accumulator driven without sockets or clocks: time is a number the test sets.
@Suite("Producer accumulator", .timeLimit(.minutes(1)))
struct ProducerAccumulatorTests {
    static let t = TopicName("orders")
    static let leader = BrokerID(1)

    static func accumulator(_ edit: (inout ProducerConfig) -> Void = { _ in }) -> ProducerAccumulator {
        var c = ProducerConfig()
        c.lingerMs = 5
        c.batchSize = 1_000
        edit(&c)
        var a = ProducerAccumulator(config: c, seed: 7)
        a.setProducerID(1000, epoch: 0)
        a.setTopic(t, partitions: 2, leaders: [0: leader, 1: leader])
        return a
    }

    static func value(_ n: Int) -> ByteBuffer { ByteBuffer(repeating: 0x61, count: n) }

    @discardableResult
    static func append(_ a: inout ProducerAccumulator, partition: Int32 = 0, bytes: Int = 10, now: Int64) throws -> ProducerAccumulator.AppendResult {
        try a.append(topic: t, partition: partition, key: nil, value: value(bytes), headers: [], timestamp: now, completion: nil, now: now)
    }

    static func header(_ b: ProducerAccumulator.Batch) throws -> RecordBatchHeader {
        try RecordBatchHeader(b.built!, at: b.built!.readerIndex)
    }

    @Test func aBatchWaitsForItsLingerUnlessItFills() throws {
        var a = Self.accumulator()
        #expect(try Self.append(&a, now: 100) == .drainAt(105), "the first record opens a batch that lingers 5 ms")
        #expect(try Self.append(&a, now: 102) == .drainAt(105))
        var d = a.drain(now: 104) { _ in true }
        #expect(d.requests.isEmpty && d.wakeAtMs == 105, "before the linger ends nothing is sent")
        d = a.drain(now: 105) { _ in true }
        #expect(d.requests.count == 1 && d.requests[0].batches[0].records == 2)

        // A batch that reaches batch.size goes at once, without waiting for its linger.
        var full = Self.accumulator()
        for _ in 0..<15 { #expect(try Self.append(&full, bytes: 40, now: 200) == .drainAt(205)) }
        #expect(try Self.append(&full, bytes: 40, now: 201) == .drainNow, "15 records of 64 bytes fill 1,000; the 16th closes the batch")
        d = full.drain(now: 201) { _ in true }
        #expect(d.requests.count == 1, "the full batch is sent; the new open one lingers")
        #expect(d.requests[0].batches[0].records == 15)
    }

    @Test func flushSendsOpenBatchesWithoutWaitingForTheLinger() throws {
        var a = Self.accumulator { $0.lingerMs = 10_000 }
        try Self.append(&a, now: 0)
        a.flushing = true
        #expect(a.drain(now: 1) { _ in true }.requests.count == 1)
    }

    @Test func atMostMaxInFlightBatchesPerPartitionAreOutstanding() throws {
        // Four batches (each closed by a drain), two in flight at most.
        var b = Self.accumulator { $0.maxInFlight = 2; $0.lingerMs = 0 }
        var inFlight: [ProducerAccumulator.Batch] = []
        var d = ProducerAccumulator.Drain()
        for i in 0..<4 {
            try Self.append(&b, now: Int64(i))
            d = b.drain(now: Int64(i)) { _ in true }
            inFlight += d.requests.flatMap(\.batches)
        }
        #expect(inFlight.count == 2 && b.inFlight(TopicPartition(Self.t, 0)) == 2, "the third and fourth wait")
        let o = b.received([inFlight[0]], results: [.init(code: .none, baseOffset: 0)], now: 5)
        #expect(o.deliveries.count == 1)
        d = b.drain(now: 5) { _ in true }
        #expect(d.requests.flatMap(\.batches).count == 1, "an answer frees one slot")
    }

    @Test func retriesKeepOrderWithFiveInFlight() throws {
        var a = Self.accumulator { $0.lingerMs = 0 }
        var sent: [ProducerAccumulator.Batch] = []
        for i in 0..<5 {
            try Self.append(&a, now: Int64(i))
            sent += a.drain(now: Int64(i)) { _ in true }.requests.flatMap(\.batches)
        }
        #expect(sent.map(\.baseSequence) == [0, 1, 2, 3, 4])
        // The leader moved: the first batch is refused, the four after it are out of order.
        var o = a.received([sent[0]], results: [.init(code: .notLeaderOrFollower)], now: 10)
        #expect(o.needMetadata == [Self.t] && o.deliveries.isEmpty)
        // Its answer arrives before the others': nothing is resent while they are in flight…
        a.setTopic(Self.t, partitions: 2, leaders: [0: BrokerID(2), 1: BrokerID(2)])
        #expect(a.drain(now: 11) { _ in true }.requests.isEmpty, "a retrying partition sends one batch at a time")
        for b in sent[1...] {
            o = a.received([b], results: [.init(code: .outOfOrderSequenceNumber)], now: 12)
            #expect(o.deliveries.isEmpty, "OUT_OF_ORDER_SEQUENCE behind a retried batch is retried, not failed")
        }
        // …then the first goes alone; once it is in, the other four follow, in order, with their sequences.
        var d = a.drain(now: 20) { _ in true }
        #expect(d.requests.flatMap(\.batches).map(\.baseSequence) == [0] && d.requests[0].broker == BrokerID(2))
        #expect(a.drain(now: 21) { _ in true }.requests.isEmpty, "nothing overtakes the retried batch")
        #expect(a.received(d.requests[0].batches, results: [.init(code: .none, baseOffset: 0)], now: 22).deliveries.count == 1)
        d = a.drain(now: 23) { _ in true }
        #expect(d.requests.flatMap(\.batches).map(\.baseSequence) == [1, 2, 3, 4], "four requests, one batch each, in sequence order")
        for r in d.requests { #expect(a.received(r.batches, results: [.init(code: .none)], now: 24).deliveries.count == 1) }
        // After a success the partition is back to five in flight.
        var more = 0
        for i in 0..<5 {
            try Self.append(&a, now: 30 + Int64(i))
            more += a.drain(now: 30 + Int64(i)) { _ in true }.requests.flatMap(\.batches).count
        }
        #expect(more == 5 && a.inFlight(TopicPartition(Self.t, 0)) == 5)
    }

    @Test func sequenceNumbersWrapAroundAndRetriesStayInOrder() throws {
        var a = Self.accumulator { $0.lingerMs = 0 }
        let tp = TopicPartition(Self.t, 0)
        a.setNextSequence(Int32.max - 1, for: tp)
        var sent: [ProducerAccumulator.Batch] = []
        for i in 0..<3 {
            for _ in 0..<2 { try Self.append(&a, now: Int64(i)) }
            sent += a.drain(now: Int64(i)) { _ in true }.requests.flatMap(\.batches)
        }
        #expect(sent.map(\.baseSequence) == [Int32.max - 1, 0, 2], "two records from MAX-1 wrap to 0")
        #expect(try sent.map { try Self.header($0).baseSequence } == [Int32.max - 1, 0, 2])
        // All three come back for retry; the wrapped ones must not overtake the first.
        _ = a.sendFailed(sent, error: KafkaConnectionError.connectionClosed, now: 5)
        var order: [Int32] = []
        for i in 0..<3 {
            let bs = a.drain(now: 6 + Int64(i)) { _ in true }.requests.flatMap(\.batches)
            order += bs.map(\.baseSequence)
            _ = a.received(bs, results: [.init(code: .none)], now: 6 + Int64(i))
        }
        #expect(order == [Int32.max - 1, 0, 2])
    }

    @Test func aTimedOutBatchBumpsTheEpochAndRenumbersTheRest() throws {
        var a = Self.accumulator { $0.lingerMs = 0; $0.deliveryTimeoutMs = 1_000 }
        try Self.append(&a, now: 0)
        let first = a.drain(now: 0) { _ in true }.requests.flatMap(\.batches)
        try Self.append(&a, now: 900)
        let second = a.drain(now: 900) { _ in true }.requests.flatMap(\.batches)
        #expect(first[0].baseSequence == 0 && second[0].baseSequence == 1)
        // Both requests time out; the first batch is past delivery.timeout.ms, the second is not.
        let o = a.sendFailed(first + second, error: KafkaConnectionError.connectionClosed, now: 1_500)
        #expect(o.deliveries.count == 1)
        if case .failure(KafkaClientError.deliveryTimedOut(let tp, let n, _))? = o.deliveries.first?.result {
            #expect(tp == TopicPartition(Self.t, 0) && n == 1)
        } else {
            Issue.record("the expired batch fails with deliveryTimedOut: \(o.deliveries)")
        }
        #expect(a.needsEpochBump, "the broker may or may not have sequence 0: later sequences could leave a gap")
        let d = a.drain(now: 1_500) { _ in true }
        let resent = d.requests.flatMap(\.batches)
        #expect(a.producerEpoch == 1 && resent.count == 1)
        let h = try Self.header(resent[0])
        #expect(h.producerEpoch == 1 && h.baseSequence == 0 && h.producerID == 1000,
                "the surviving batch is renumbered from 0 under the new epoch, in its bytes too")
        #expect((try? RecordBatch.validate(resent[0].built!, at: resent[0].built!.readerIndex)) != nil, "the CRC covers the new fields")
    }

    @Test func theEpochBumpWaitsForBatchesInFlight() throws {
        var a = Self.accumulator { $0.lingerMs = 0; $0.deliveryTimeoutMs = 1_000 }
        try Self.append(&a, partition: 0, now: 0)
        try Self.append(&a, partition: 1, now: 500)
        let d0 = a.drain(now: 500) { _ in true }.requests.flatMap(\.batches)
        #expect(d0.count == 2)
        let p0 = d0.first { $0.tp.partition == 0 }!, p1 = d0.first { $0.tp.partition == 1 }!
        _ = a.received([p0], results: [.init(code: .invalidRecord)], now: 600)
        #expect(a.needsEpochBump)
        try Self.append(&a, partition: 0, now: 700)
        #expect(a.drain(now: 700) { _ in true }.requests.isEmpty, "nothing is sent while partition 1 still has a batch in flight")
        _ = a.received([p1], results: [.init(code: .none, baseOffset: 0)], now: 800)
        let next = a.drain(now: 800) { _ in true }.requests.flatMap(\.batches)
        #expect(a.producerEpoch == 1 && next.map(\.baseSequence) == [0])
    }

    @Test func fatalErrorsFailTheBatchAndDuplicatesCountAsDelivered() throws {
        var a = Self.accumulator { $0.lingerMs = 0 }
        try Self.append(&a, partition: 0, now: 0)
        try Self.append(&a, partition: 1, now: 0)
        let bs = a.drain(now: 0) { _ in true }.requests.flatMap(\.batches)
        let o = a.received(bs, results: [.init(code: .messageTooLarge), .init(code: .duplicateSequenceNumber)], now: 1)
        #expect(o.deliveries.count == 2)
        if case .failure(KafkaClientError.broker(let code, _)) = o.deliveries[0].result { #expect(code == .messageTooLarge) } else { Issue.record("fails") }
        if case .success(let r) = o.deliveries[1].result { #expect(r.baseOffset == -1) } else { Issue.record("a duplicate was written before") }
        #expect(a.outstanding == 0 && a.bufferedBytes == 0)
    }

    @Test func batchesWaitingForALeaderOrConnectionAskForThem() throws {
        var a = Self.accumulator { $0.lingerMs = 0 }
        a.setTopic(Self.t, partitions: 2, leaders: [0: BrokerID(-1), 1: Self.leader])
        try Self.append(&a, partition: 0, now: 0)
        try Self.append(&a, partition: 1, now: 0)
        let d = a.drain(now: 0) { _ in false }
        #expect(d.needMetadata == [Self.t] && d.needConnection == [Self.leader] && d.requests.isEmpty)
    }

    @Test func bufferMemoryIsCountedUntilDelivery() throws {
        var a = Self.accumulator { $0.lingerMs = 0; $0.bufferMemory = 100 }
        #expect(a.hasRoom(for: 500), "one record always fits an empty buffer")
        try Self.append(&a, bytes: 60, now: 0)
        #expect(!a.hasRoom(for: 60))
        let bs = a.drain(now: 0) { _ in true }.requests.flatMap(\.batches)
        _ = a.received(bs, results: [.init(code: .none)], now: 1)
        #expect(a.hasRoom(for: 60) && a.bufferedBytes == 0)
    }
}

