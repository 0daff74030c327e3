import Testing
@testable import KafkaClient

/// When a cluster's connection trouble is reported: at once, then at most every interval.
@Suite("Connect failure reports", .timeLimit(.minutes(1)))
struct ConnectFailuresTests {
    let t0 = ContinuousClock.now

    @Test func theFirstFailureAtOnceThenOncePerInterval() {
        var f = ConnectFailures()
        let r1 = f.failed("a:1", now: t0, every: .seconds(10))
        #expect(r1)
        let r2 = f.failed("a:1", now: t0 + .seconds(3), every: .seconds(10))
        #expect(!r2)
        let r3 = f.failed("b:1", now: t0 + .seconds(3), every: .seconds(10))
        #expect(r3, "each address on its own")
        let r4 = f.failed("a:1", now: t0 + .seconds(10), every: .seconds(10))
        #expect(r4)
    }

    @Test func aSlowConnectIsReportedOnlyWhenNothingElseWasJustSaid() {
        var f = ConnectFailures()
        let r5 = f.slow("a:1", now: t0 + .seconds(2), every: .seconds(10))
        #expect(r5)
        let r6 = f.failed("a:1", now: t0 + .seconds(10), every: .seconds(10))
        #expect(r6, "the reason still comes")
        let r7 = f.slow("a:1", now: t0 + .seconds(12), every: .seconds(10))
        #expect(!r7)
    }

    @Test func recoveryTellsHowLongTheAddressWasDown() {
        var f = ConnectFailures()
        let r8 = f.succeeded("a:1", now: t0)
        #expect(r8 == nil, "nothing to tell for an address that never failed")
        _ = f.failed("a:1", now: t0, every: .seconds(10))
        let r9 = f.succeeded("a:1", now: t0 + .seconds(7)) == .seconds(7)
        #expect(r9)
        let r10 = f.failed("a:1", now: t0 + .seconds(8), every: .seconds(10))
        #expect(r10, "a new outage is reported at once")
    }
}
