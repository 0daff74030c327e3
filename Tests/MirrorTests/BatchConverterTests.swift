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

/// A message in format v0 or v1 as a pre-0.11 broker stored it.
func legacyMessage(offset: Int64, magic: Int8, attributes: Int8 = 0, timestamp: Int64 = -1, key: ByteBuffer?, value: ByteBuffer?) -> ByteBuffer {
    var body = ByteBuffer()
    body.writeInteger(magic)
    body.writeInteger(attributes)
    if magic == 1 { body.writeInteger(timestamp) }
    for field in [key, value] {
        if var f = field {
            body.writeInteger(Int32(f.readableBytes))
            body.writeBuffer(&f)
        } else {
            body.writeInteger(Int32(-1))
        }
    }
    var out = ByteBuffer()
    out.writeInteger(offset)
    out.writeInteger(Int32(4 + body.readableBytes))
    out.writeInteger(CRC32.checksum(body, from: body.readerIndex, to: body.writerIndex))
    out.writeBuffer(&body)
    return out
}

func legacy(offset: Int64, magic: Int8, timestamp: Int64 = -1, key: String?, value: String?) -> ByteBuffer {
    legacyMessage(offset: offset, magic: magic, timestamp: timestamp, key: key.map { ByteBuffer(string: $0) }, value: value.map { ByteBuffer(string: $0) })
}

@Suite("Batch conversion of message formats v0 and v1", .timeLimit(.minutes(1)))
struct LegacyFormatTests {
    @Test func crc32IsTheIEEEChecksum() {
        let b = ByteBuffer(string: "123456789")
        #expect(CRC32.checksum(b, from: b.readerIndex, to: b.writerIndex) == 0xCBF4_3926)
    }

    @Test func v0MessagesBecomeOneBatchWithoutTimestamps() throws {
        var set = ByteBuffer()
        for (i, (k, v)) in [("k1", "a"), (nil, "b"), ("k3", nil)].enumerated() {
            var m = legacy(offset: 10 + Int64(i), magic: 0, key: k, value: v)
            set.writeBuffer(&m)
        }
        let r = try BatchConverter().convert(set, from: 10)
        #expect(r.nextPosition == 13)
        #expect(r.outputs.count == 1)
        #expect(r.outputs[0].sourceRuns.map(\.first) == [10] && r.outputs[0].sourceRuns.map(\.count) == [3])
        let out = try stamped(r.outputs[0])
        let h = try RecordBatch.validate(out, at: out.readerIndex)
        try RecordBatch.validateForProduce(h)
        #expect(h.magic == 2 && !h.isLogAppendTime)
        let recs = try records(of: r.outputs[0])
        #expect(recs.map { $0.key.map { String(buffer: $0) } } == ["k1", nil, "k3"])
        #expect(recs.map { $0.value.map { String(buffer: $0) } } == ["a", "b", nil])
        #expect(recs.map(\.timestamp) == [-1, -1, -1])
    }

    @Test func manyPlainMessagesAreGatheredIntoFewBatches() throws {
        var set = ByteBuffer()
        for i in 0..<100 {
            var m = legacy(offset: Int64(i), magic: 0, key: nil, value: String(repeating: "x", count: 1000))
            set.writeBuffer(&m)
        }
        let r = try BatchConverter().convert(set, from: 0)
        #expect(r.outputs.count == 2, "64 KiB of source messages per batch, not a batch per message")
        #expect(r.outputs.map(\.recordCount).reduce(0, +) == 100)
        #expect(r.outputs.flatMap(\.sourceRuns).map(\.first) == [0, Int64(r.outputs[0].recordCount)])
    }

    @Test func aV1GzipWrapperGivesItsInnerMessagesAbsoluteOffsetsAndTheirTimes() throws {
        // Inner offsets are relative (0, 1, 2); the wrapper carries the last one's absolute offset.
        var inner = ByteBuffer()
        for i in 0..<3 {
            var m = legacy(offset: Int64(i), magic: 1, timestamp: 1_500_000_000_000 + Int64(i), key: "k\(i)", value: "v\(i)")
            inner.writeBuffer(&m)
        }
        let compressed = try CompressionCodec.gzip.compress(inner)
        var set = legacyMessage(offset: 22, magic: 1, attributes: 1, timestamp: 1_500_000_000_002, key: nil, value: compressed)
        // And a plain v1 message with LogAppendTime after it.
        var plain = legacyMessage(offset: 23, magic: 1, attributes: 0x8, timestamp: 1_600_000_000_000, key: nil, value: ByteBuffer(string: "late"))
        set.writeBuffer(&plain)
        let r = try BatchConverter().convert(set, from: 21)  // a resume inside the wrapper
        #expect(r.nextPosition == 24)
        #expect(r.outputs.map(\.recordCount) == [2, 1])
        #expect(r.outputs[0].sourceRuns.map(\.first) == [21] && r.outputs[0].sourceRuns.map(\.count) == [2])
        let out = try stamped(r.outputs[0])
        #expect(try RecordBatch.validate(out, at: out.readerIndex).compression == .gzip)
        let recs = try records(of: r.outputs[0])
        #expect(recs.map { $0.value.map { String(buffer: $0) } } == ["v1", "v2"])
        #expect(recs.map(\.timestamp) == [1_500_000_000_001, 1_500_000_000_002])
        let late = try records(of: r.outputs[1])
        #expect(late.map(\.timestamp) == [1_600_000_000_000])
        #expect(r.outputs[1].sourceRuns.map(\.first) == [23])
    }

    @Test func aV1WrapperWithLogAppendTimeGivesEveryInnerMessageItsTime() throws {
        var inner = ByteBuffer()
        for i in 0..<2 {
            var m = legacy(offset: Int64(i), magic: 1, timestamp: 5 + Int64(i), key: nil, value: "v\(i)")
            inner.writeBuffer(&m)
        }
        let set = legacyMessage(offset: 1, magic: 1, attributes: 0x8 | 1, timestamp: 1_650_000_000_000, key: nil,
                                value: try CompressionCodec.gzip.compress(inner))
        let r = try BatchConverter().convert(set, from: 0)
        #expect(try records(of: r.outputs[0]).map(\.timestamp) == [1_650_000_000_000, 1_650_000_000_000])
    }

    @Test func aLegacyMessageThenAV2BatchAreBothCopied() throws {
        // A topic written before and after a broker upgrade; the small message also ends the fetch
        // closer to its end than a v2 header is long.
        var set = legacy(offset: 0, magic: 0, key: nil, value: "old")
        var batch = try sourceBatch(base: 1, ["new1", "new2"])
        set.writeBuffer(&batch)
        var last = legacy(offset: 3, magic: 0, key: nil, value: "x")
        set.writeBuffer(&last)
        let r = try BatchConverter().convert(set, from: 0)
        #expect(r.nextPosition == 4)
        #expect(r.outputs.map(\.recordCount) == [1, 2, 1])
        #expect(r.outputs[1].checksumValid, "the v2 batch passes through as bytes")
    }

    @Test func corruptOrHostileLegacyMessagesAreRefusedNotTrusted() throws {
        var flipped = legacy(offset: 0, magic: 0, key: "k", value: "value")
        flipped.setInteger(UInt8(ascii: "V"), at: flipped.writerIndex - 5)
        #expect(throws: KafkaProtocolError.self) { try BatchConverter().convert(flipped, from: 0) }
        // A key length beyond the message, with a CRC that matches.
        var body = ByteBuffer()
        body.writeInteger(Int8(0)); body.writeInteger(Int8(0)); body.writeInteger(Int32.max); body.writeInteger(Int32(-1))
        var hostile = ByteBuffer()
        hostile.writeInteger(Int64(0)); hostile.writeInteger(Int32(4 + body.readableBytes))
        hostile.writeInteger(CRC32.checksum(body, from: body.readerIndex, to: body.writerIndex)); hostile.writeBuffer(&body)
        #expect(throws: KafkaProtocolError.self) { try BatchConverter().convert(hostile, from: 0) }
        // An offset the set could not continue after (the next position would overflow).
        #expect(throws: KafkaProtocolError.self) { try BatchConverter().convert(legacy(offset: .max, magic: 0, key: nil, value: "x"), from: 0) }
        // Inner offsets that would run below zero.
        var inner = legacy(offset: Int64.max - 1, magic: 1, timestamp: 0, key: nil, value: "x")
        var second = legacy(offset: 0, magic: 1, timestamp: 0, key: nil, value: "y")
        inner.writeBuffer(&second)
        let wrapper = legacyMessage(offset: 5, magic: 1, attributes: 1, timestamp: 0, key: nil, value: try CompressionCodec.gzip.compress(inner))
        #expect(throws: KafkaProtocolError.self) { try BatchConverter().convert(wrapper, from: 0) }
    }
}
