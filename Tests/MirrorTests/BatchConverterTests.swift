import KafkaProtocol
import KafkaWire
import Mirror
import NIOCore
import Testing

/// A batch as a source log holds it: base offset set, producer fields of an idempotent producer.
func sourceBatch(base: Int64, _ values: [String], keys: [String?]? = nil, headers: [RecordHeader] = [], timestamp: Int64 = 1_700_000_000_000,
                 compression: CompressionCodec = .none, producerID: Int64 = 7, attributes: Int16 = 0) throws -> ByteBuffer {
    var b = RecordBatchBuilder(producerID: producerID, producerEpoch: 0, baseSequence: producerID >= 0 ? 0 : -1)
    for (i, v) in values.enumerated() {
        b.append(key: keys?[i].map { ByteBuffer(string: $0) }, value: ByteBuffer(string: v), headers: headers, timestamp: timestamp + Int64(i))
    }
    var out = try b.build(compression: compression)
    RecordBatch.setBaseOffset(base, in: &out, at: out.readerIndex)
    if attributes != 0 {
        let h = try RecordBatchHeader(out, at: out.readerIndex)
        out.setInteger(h.attributes | attributes, at: out.readerIndex + RecordBatchHeader.attributesOffset, endianness: .big)
        try RecordBatch.setProducer(id: h.producerID, epoch: h.producerEpoch, baseSequence: h.baseSequence, in: &out, at: out.readerIndex)
    }
    return out
}

/// An output as the writer sends it: stamped without a producer id.
func stamped(_ o: BatchConverter.Output) throws -> ByteBuffer {
    var b = o.batch
    try RecordBatch.setProducer(id: -1, epoch: -1, baseSequence: -1, in: &b, at: b.readerIndex)
    return b
}

func records(of output: BatchConverter.Output) throws -> [Record] {
    let b = try stamped(output)
    return try RecordBatch.records(in: b, at: b.readerIndex)
}

@Suite("Batch conversion", .timeLimit(.minutes(1)))
struct BatchConverterTests {
    @Test func contiguousBatchesPassThroughAsBytesWithOnlyProducerFieldsRewritten() throws {
        var fetched = try sourceBatch(base: 40, ["a", "b", "c"], keys: ["k1", nil, "k3"], headers: [RecordHeader(key: "h", value: ByteBuffer(string: "v"))], compression: .gzip)
        var second = try sourceBatch(base: 43, ["d"])
        fetched.writeBuffer(&second)
        let original = fetched
        let r = try BatchConverter().convert(fetched, from: 40)
        #expect(r.nextPosition == 44)
        #expect(r.outputs.count == 2)
        let out = try stamped(r.outputs[0])
        let h = try RecordBatch.validate(out, at: out.readerIndex)
        #expect(h.producerID == -1 && h.producerEpoch == -1 && h.baseSequence == -1)
        #expect(h.compression == .gzip, "still compressed: not re-encoded")
        try RecordBatch.validateForProduce(h)
        // Every byte after the producer fields is the source's: the compressed records were not touched.
        let body = RecordBatchHeader.size
        #expect(out.getBytes(at: out.readerIndex + body, length: out.readableBytes - body) ==
                original.getBytes(at: original.readerIndex + body, length: out.readableBytes - body))
        #expect(r.outputs[0].sourceRuns.map(\.first) == [40] && r.outputs[0].sourceRuns.map(\.count) == [3])
        let recs = try records(of: r.outputs[0])
        #expect(recs.map { $0.key.map { String(buffer: $0) } } == ["k1", nil, "k3"])
        #expect(recs.map(\.headers) == Array(repeating: [RecordHeader(key: "h", value: ByteBuffer(string: "v"))], count: 3))
        #expect(recs.map(\.timestamp) == [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002])
    }

    @Test func batchesWithCompactionGapsAreRebatchedWithContiguousOffsets() throws {
        // A compacted batch: offsets 10…16 of which 10, 11, 15, 16 survive.
        let full = try sourceBatch(base: 10, ["a", "b", "x", "y", "z", "c", "d"], compression: .gzip)
        let h = try RecordBatchHeader(full, at: full.readerIndex)
        let kept = try RecordBatch.records(in: full, at: full.readerIndex).filter { [10, 11, 15, 16].contains($0.offset) }
        let compacted = try RecordBatch.rebuild(h, keeping: kept)
        let r = try BatchConverter().convert(compacted, from: 0)
        #expect(r.nextPosition == 17)
        let out = try #require(r.outputs.first)
        let oh = try RecordBatch.validate(try stamped(out), at: 0)
        try RecordBatch.validateForProduce(oh)
        #expect(oh.lastOffsetDelta == 3 && oh.recordsCount == 4)
        #expect(try records(of: out).map { String(buffer: $0.value!) } == ["a", "b", "c", "d"])
        #expect(try records(of: out).map(\.timestamp) == kept.map(\.timestamp), "CreateTime kept")
        #expect(out.sourceRuns.map(\.first) == [10, 15] && out.sourceRuns.map(\.count) == [2, 2])
    }

    @Test func aResumeInsideABatchCopiesOnlyFromThePosition() throws {
        let b = try sourceBatch(base: 100, ["a", "b", "c", "d"])
        let r = try BatchConverter().convert(b, from: 102)
        let out = try #require(r.outputs.first)
        #expect(try records(of: out).map { String(buffer: $0.value!) } == ["c", "d"])
        #expect(out.sourceRuns.map(\.first) == [102])
        // A fetch that returns only batches before the position yields nothing and keeps it.
        #expect(try BatchConverter().convert(b, from: 104).outputs.isEmpty)
    }

    @Test func controlBatchesAndAbortedTransactionsAreDroppedAndCommittedOnesKept() throws {
        var fetched = ByteBuffer()
        let committed = try sourceBatch(base: 0, ["c1", "c2"], producerID: 5, attributes: 0x10)
        let commitMarker = try sourceBatch(base: 2, ["marker"], producerID: 5, attributes: 0x30)
        let aborted = try sourceBatch(base: 3, ["x1"], producerID: 6, attributes: 0x10)
        let abortMarker = try sourceBatch(base: 4, ["marker"], producerID: 6, attributes: 0x30)
        let plain = try sourceBatch(base: 5, ["p"], producerID: -1)
        for b in [committed, commitMarker, aborted, abortMarker, plain] { fetched.writeImmutableBuffer(b) }
        let r = try BatchConverter().convert(fetched, from: 0, aborted: [.init(producerID: 6, firstOffset: 3)])
        #expect(r.nextPosition == 6)
        #expect(r.outputs.map { $0.sourceRuns.map(\.first) } == [[0], [5]])
        let h = try RecordBatch.validate(try stamped(r.outputs[0]), at: 0)
        #expect(!h.isTransactional, "a committed transaction's records are produced as ordinary records")
        try RecordBatch.validateForProduce(h)
    }

    @Test func stampingInsideAProduceFrameLeavesAValidBatchThere() throws {
        var fetched = ByteBuffer()
        let plain = try sourceBatch(base: 0, Array(repeating: "value", count: 50), compression: .gzip)
        let committed = try sourceBatch(base: 50, ["c1", "c2"], producerID: 5, attributes: 0x10)
        let marker = try sourceBatch(base: 52, ["marker"], producerID: 5, attributes: 0x30)
        let resumed = try sourceBatch(base: 53, ["r1", "r2", "r3"])
        for b in [plain, committed, marker, resumed] { fetched.writeImmutableBuffer(b) }
        let r = try BatchConverter().convert(fetched, from: 0)
        // The resume inside the last batch comes from a second fetch.
        let tail = try BatchConverter().convert(resumed, from: 54)
        let outputs = r.outputs + tail.outputs
        #expect(outputs.map(\.checksumValid) == [true, true, true, false], "passed through (one with its transactional bit cleared) or rebuilt")
        #expect(throws: Never.self) { try RecordBatch.validate(outputs[1].batch, at: outputs[1].batch.readerIndex) }
        for version: Int16 in [3, 8, 9] {
            for (i, o) in outputs.enumerated() {
                var req = ProduceRequest()
                req.acks = -1
                req.topicData = [.init(name: "t", partitionData: [.init(index: 0, records: .bytes(o.batch))])]
                var frame = try KafkaConnection.encodeFrame(req, version: version, clientID: "test")
                try BatchConverter.stamp(o, inFrame: &frame, version: version, producerID: 12_345, epoch: 3, sequence: Int32(77 + i))
                let at = frame.writerIndex - (version >= 9 ? 3 : 0) - o.batch.readableBytes
                let h = try RecordBatch.validate(frame, at: at)
                #expect(h.producerID == 12_345 && h.producerEpoch == 3 && h.baseSequence == Int32(77 + i), "v\(version) output \(i)")
                try RecordBatch.validateForProduce(h)
            }
        }
    }

    @Test func logAppendTimeBecomesTheRecordsCreateTime() throws {
        var b = try sourceBatch(base: 0, ["a", "b"])
        try RecordBatch.setLogAppendTime(1_800_000_000_000, in: &b, at: b.readerIndex)
        let r = try BatchConverter().convert(b, from: 0)
        let out = try #require(r.outputs.first)
        let h = try RecordBatch.validate(try stamped(out), at: 0)
        try RecordBatch.validateForProduce(h)
        #expect(try records(of: out).map(\.timestamp) == [1_800_000_000_000, 1_800_000_000_000])
    }

    @Test func identityNamingAddsProvenanceAndDropsRecordsThatCameFromTheTarget() throws {
        var fetched = try sourceBatch(base: 0, ["local"])
        var echoed = try sourceBatch(base: 1, ["from-eu"], headers: [RecordHeader(key: BatchConverter.provenanceHeader, value: ByteBuffer(string: "eu-west"))])
        var relayed = try sourceBatch(base: 2, ["from-ap"], headers: [RecordHeader(key: BatchConverter.provenanceHeader, value: ByteBuffer(string: "ap-south"))])
        fetched.writeBuffer(&echoed)
        fetched.writeBuffer(&relayed)
        let r = try BatchConverter(provenance: (source: "us-east", target: "eu-west")).convert(fetched, from: 0)
        #expect(r.droppedAsLoop == 1)
        #expect(r.nextPosition == 3)
        let out = r.outputs.flatMap { o in (try? records(of: o)) ?? [] }
        #expect(out.map { String(buffer: $0.value!) } == ["local", "from-ap"])
        #expect(out.map { $0.headers.first { $0.key == BatchConverter.provenanceHeader }?.value.map { String(buffer: $0) } } == ["us-east", "ap-south,us-east"])
        #expect(r.outputs.map { $0.sourceRuns.map(\.first) } == [[0], [2]])
    }

    @Test func implausibleOffsetsFromASourceAreRefused() throws {
        let b = try sourceBatch(base: Int64.max - 3, ["a", "b"])
        #expect(throws: MirrorError.self) { try BatchConverter().convert(b, from: 0) }
    }
}
