import Mirror
import Testing

@Suite("Partition lag", .timeLimit(.minutes(1)))
struct PartitionLagTests {
    @Test func caughtUpMeansNoLagInRecordsOrTime() {
        var lag = PartitionLag()
        lag.resume(at: 100, now: 1_000)
        lag.sourceSeen(highWatermark: 100, logStart: 0, now: 1_000)
        #expect(lag.lagRecords == 0)
        #expect(lag.lagMilliseconds(now: 50_000) == 0)
        #expect(lag.lastProgressAt == 1_000)
    }

    @Test func aFetchedRecordDatesTheLagByItsOwnTimestamp() {
        var lag = PartitionLag()
        lag.resume(at: 0, now: 10_000)
        // Records produced at 9 000 ms, seen by a fetch at 10 000.
        lag.sourceSeen(highWatermark: 50, logStart: 0, now: 10_000)
        lag.fetched(firstOffset: 0, nextOffset: 50, timestamp: 9_000, now: 10_000)
        #expect(lag.lagRecords == 50)
        #expect(lag.lagMilliseconds(now: 12_000) == 3_000)
        let done = lag.copied(upTo: 50, records: 50, bytes: 5_000, now: 10_250)
        #expect(done == [PartitionLag.Latency(dwellMs: 1_000, transferMs: 250)])
        #expect(lag.lagRecords == 0 && lag.lagMilliseconds(now: 20_000) == 0)
        #expect(lag.copiedRecords == 50 && lag.copiedBytes == 5_000)
    }

    @Test func recordsNotFetchedYetAreDatedByWhenTheSourceFirstShowedThem() {
        var lag = PartitionLag()
        lag.resume(at: 0, now: 0)
        lag.sourceSeen(highWatermark: 10, logStart: 0, now: 1_000)
        lag.sourceSeen(highWatermark: 20, logStart: 0, now: 2_000)
        lag.sourceSeen(highWatermark: 30, logStart: 0, now: 3_000)
        // Nothing fetched (the mirror is stalled): the first record waits since 1 000 at least.
        #expect(lag.lagMilliseconds(now: 10_000) == 9_000)
        // Copied up to 15: offset 15 was first seen in the rise to 20, at 2 000.
        lag.copied(upTo: 15, records: 15, bytes: 15, now: 10_000)
        #expect(lag.lagRecords == 15)
        #expect(lag.lagMilliseconds(now: 10_000) == 8_000)
        lag.copied(upTo: 30, records: 15, bytes: 15, now: 11_000)
        #expect(lag.lagMilliseconds(now: 11_000) == 0)
    }

    @Test func lagGrowsWhileStalledAndShrinksAfterwards() {
        var lag = PartitionLag()
        lag.resume(at: 0, now: 0)
        var samples: [Int64] = []
        for second in 1...5 {
            lag.sourceSeen(highWatermark: Int64(second) * 100, logStart: 0, now: Int64(second) * 1_000)
            samples.append(lag.lagMilliseconds(now: Int64(second) * 1_000))
        }
        #expect(samples == [0, 1_000, 2_000, 3_000, 4_000])
        #expect(lag.lagRecords == 500)
        lag.copied(upTo: 500, records: 500, bytes: 500, now: 6_000)
        #expect(lag.lagRecords == 0 && lag.lagMilliseconds(now: 6_000) == 0)
        #expect(lag.lastProgressAt == 6_000)
    }

    @Test func recordsRetentionRemovedAreNotCountedAsWaiting() {
        var lag = PartitionLag()
        lag.resume(at: 10, now: 0)
        lag.sourceSeen(highWatermark: 100, logStart: 60, now: 0)
        #expect(lag.lagRecords == 40)
    }

    @Test func aResumeForgetsWhatWasFetchedForTheOldPosition() {
        var lag = PartitionLag()
        lag.resume(at: 0, now: 0)
        lag.sourceSeen(highWatermark: 10, logStart: 0, now: 5_000)
        lag.fetched(firstOffset: 0, nextOffset: 10, timestamp: 100, now: 5_000)
        lag.resume(at: 4, now: 6_000)
        #expect(lag.lagRecords == 6)
        // Dated by the rise, not by the dropped fetch.
        #expect(lag.lagMilliseconds(now: 6_000) == 1_000)
    }

    @Test func aLongStallKeepsItsOldestRiseWithinBoundedMemory() {
        var lag = PartitionLag()
        lag.resume(at: 0, now: 0)
        for i in 1...10_000 { lag.sourceSeen(highWatermark: Int64(i), logStart: 0, now: Int64(i)) }
        #expect(lag.lagMilliseconds(now: 20_000) == 19_999)
    }
}
