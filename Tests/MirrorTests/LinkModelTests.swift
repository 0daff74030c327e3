import LinkSimulator
import Testing

@Suite("WAN link model", .timeLimit(.minutes(1)))
struct LinkModelTests {
    let ms: Int64 = 1_000_000

    @Test func latencyDelaysEveryChunkAndJitterNeverReorders() {
        var link = LinkModel(.init(latencyNanos: 40 * ms, jitterNanos: 10 * ms))
        var last: Int64 = 0
        var spread = Set<Int64>()
        for i in 0..<1_000 {
            let now = Int64(i) * ms / 10
            guard case .deliver(let at) = link.send(bytes: 100, now: now) else {
                Issue.record("no loss configured")
                return
            }
            #expect(at >= now + 40 * ms && at <= max(last, now + 50 * ms), "40 ms plus at most 10 ms of jitter")
            #expect(at >= last, "in order")
            last = at
            spread.insert((at - now) / ms)
        }
        #expect(spread.count > 5, "the jitter varies: \(spread.sorted())")
    }

    @Test func bandwidthPacesChunksOneAfterTheOther() {
        // 8 Mbit/s: 1 MB takes one second on the wire.
        var link = LinkModel(.init(latencyNanos: 0, bitsPerSecond: 8_000_000))
        var at: Int64 = 0
        for _ in 0..<10 {
            if case .deliver(let t) = link.send(bytes: 100_000, now: 0) { at = t }
        }
        #expect(at == 1_000 * ms, "ten 100 kB chunks sent at once arrive after 1 s: \(Double(at) / 1e9) s")
        #expect(link.backlogNanos(now: 0) == 1_000 * ms)
        #expect(link.backlogNanos(now: 2_000 * ms) == 0)
        if case .deliver(let t) = link.send(bytes: 1_000, now: 2_000 * ms) { #expect(t == 2_001 * ms) }
    }

    @Test func lossCutsAboutThatShareOfChunks() {
        var link = LinkModel(.init(loss: 0.01))
        var cuts = 0
        for i in 0..<100_000 where link.send(bytes: 10, now: Int64(i)) == .cut { cuts += 1 }
        #expect(cuts > 800 && cuts < 1_200, "about 1 %: \(cuts)")
    }

    @Test func parsesTheFlagsUnits() {
        #expect(LinkModel.Settings.parseDuration("40ms") == 40 * ms)
        #expect(LinkModel.Settings.parseDuration("1.5s") == 1_500 * ms)
        #expect(LinkModel.Settings.parseDuration("250us") == 250_000)
        #expect(LinkModel.Settings.parseDuration("7") == 7 * ms)
        #expect(LinkModel.Settings.parseDuration("-3ms") == nil && LinkModel.Settings.parseDuration("fast") == nil)
        #expect(LinkModel.Settings.parseBandwidth("100mbit") == 100_000_000)
        #expect(LinkModel.Settings.parseBandwidth("1gbit") == 1_000_000_000)
        #expect(LinkModel.Settings.parseBandwidth("10mbyte") == 80_000_000)
        #expect(LinkModel.Settings.parseBandwidth("0mbit") == nil && LinkModel.Settings.parseBandwidth("lots") == nil)
        #expect(LinkModel.Settings.parseLoss("0.1%") == 0.001)
        #expect(LinkModel.Settings.parseLoss("0.02") == 0.02)
        #expect(LinkModel.Settings.parseLoss("150%") == nil && LinkModel.Settings.parseLoss("2") == nil)
    }
}
