import Mirror
import Testing

@Suite("Offset map", .timeLimit(.minutes(1)))
struct OffsetMapTests {
    @Test func contiguousBatchesMakeOneRun() throws {
        var m = PartitionOffsetMap()
        try m.append(src: 0, tgt: 0, count: 10)
        let r = try m.append(src: 10, tgt: 10, count: 5)
        #expect(m.runs.count == 1)
        #expect(r == OffsetRun(src: 0, tgt: 0, count: 15))
    }

    @Test func aCommittedOffsetTranslatesToTheFirstCopiedRecordAtOrAfterIt() throws {
        // Source records 10, 11, 15, 16 (compacted gap 12–14), then 20–29 after a control batch gap.
        var m = PartitionOffsetMap()
        try m.append(src: 10, tgt: 100, count: 2)
        try m.append(src: 15, tgt: 102, count: 2)
        try m.append(src: 20, tgt: 104, count: 10)
        #expect(m.runs.count == 3)
        #expect(m.translate(0) == 100, "before anything copied: the first copied record")
        #expect(m.translate(10) == 100)
        #expect(m.translate(11) == 101)
        #expect(m.translate(12) == 102, "inside a gap: the next copied record")
        #expect(m.translate(14) == 102)
        #expect(m.translate(16) == 103)
        #expect(m.translate(17) == 104)
        #expect(m.translate(29) == 113)
        #expect(m.translate(30) == 114, "the next record to be copied")
        #expect(m.translate(1_000) == 114, "beyond what was copied: the end of what was copied")
        #expect(PartitionOffsetMap().translate(5) == nil)
        #expect(m.sourceOffset(ofTarget: 103) == 16)
    }

    @Test func truncatingToTheTargetEndWithdrawsWhatDidNotLand() throws {
        var m = PartitionOffsetMap()
        try m.append(src: 0, tgt: 0, count: 100)
        try m.append(src: 130, tgt: 100, count: 20)
        try m.append(src: 160, tgt: 120, count: 5)
        let (shortened, removed) = m.truncate(targetEnd: 110)
        #expect(m.runs == [OffsetRun(src: 0, tgt: 0, count: 100), OffsetRun(src: 130, tgt: 100, count: 10)])
        #expect(shortened == [OffsetRun(src: 130, tgt: 100, count: 10)])
        #expect(removed == [OffsetRun(src: 160, tgt: 120, count: 5)])
        #expect(m.sourceEnd == 140)
        #expect(m.targetEnd == 110)
    }

    @Test func offsetsThatGoBackwardsAreRefusedNotTrapped() throws {
        var m = PartitionOffsetMap()
        try m.append(src: 10, tgt: 0, count: 5)
        #expect(throws: MirrorError.self) { try m.append(src: 12, tgt: 5, count: 1) }
        #expect(throws: MirrorError.self) { try m.append(src: 20, tgt: 3, count: 1) }
        #expect(throws: MirrorError.self) { try m.append(src: 20, tgt: 5, count: 0) }
    }
}
