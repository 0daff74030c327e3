import Foundation
import Mirror
import Testing

@Suite("Lag history", .timeLimit(.minutes(1)))
struct LagHistoryTests {
    func row(_ topic: String, _ p: Int, records: Int64, seconds: Double) -> LagReport.Row {
        LagReport.Row(flow: "f", source: "a", target: "b", topic: topic, partition: p, remoteTopic: "a.\(topic)", lagRecords: records,
                      lagSeconds: seconds, state: "running", transferP50Seconds: nil, transferP99Seconds: nil)
    }

    @Test func keepsAWindowAndGapsWherePartitionsWereAbsent() throws {
        var h = LagHistory(capacity: 3)
        h.record(now: 1_000, rows: [row("t", 0, records: 5, seconds: 1)])
        h.record(now: 2_000, rows: [row("t", 0, records: 7, seconds: 2), row("t", 1, records: 1, seconds: 0.5)])
        h.record(now: 1_500, rows: [row("t", 0, records: 99, seconds: 99)])  // back in time: ignored
        h.record(now: 3_000, rows: [row("t", 1, records: 2, seconds: 1)])
        let k0 = LagHistory.Key(flow: "f", topic: "t", partition: 0), k1 = LagHistory.Key(flow: "f", topic: "t", partition: 1)
        #expect(h.points(k0).map(\.records) == [5, 7, nil])
        #expect(h.points(k1).map(\.records) == [nil, 1, 2])
        #expect(h.flowPoints("f").map(\.records) == [5, 8, 2])
        #expect(h.flowPoints("f").map(\.seconds) == [1, 2, 1])
        h.record(now: 4_000, rows: [row("t", 1, records: 0, seconds: 0)])
        #expect(Array(h.times) == [2_000, 3_000, 4_000], "the oldest point leaves a full window")
        h.record(now: 5_000, rows: [])
        h.record(now: 6_000, rows: [])
        #expect(h.keys == [k1], "a partition with no point left in the window is forgotten")
        let back = try LagHistory.decode(try h.encode())
        #expect(try back.encode() == h.encode(), "the /history JSON reads back the same (NaN gaps are not ==)")
    }

    @Test func aRecorderWithAFileKeepsItsPointsAcrossARestart() throws {
        let file = NSTemporaryDirectory() + "lag-history-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let first = try LagHistoryRecorder(capacity: 4, file: file)
        for i in 0..<3 { first.record(now: Int64(1_000 * (i + 1)), rows: [row("t", 0, records: Int64(i), seconds: Double(i))]) }
        let second = try LagHistoryRecorder(capacity: 4, file: file)
        #expect(Array(second.snapshot.times) == [1_000, 2_000, 3_000])
        #expect(second.snapshot.points(.init(flow: "f", topic: "t", partition: 0)).map(\.records) == [0, 1, 2])
        // A line cut by a crash costs that point only.
        let h = try #require(FileHandle(forWritingAtPath: file))
        h.seekToEndOfFile()
        h.write(Data("{\"t\":4000,\"rows\":[{\"fl".utf8))
        try h.close()
        for i in 4..<12 { second.record(now: Int64(1_000 * (i + 1)), rows: [row("t", 0, records: Int64(i), seconds: 0)]) }
        let third = try LagHistoryRecorder(capacity: 4, file: file)
        #expect(Array(third.snapshot.times) == [9_000, 10_000, 11_000, 12_000])
        let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 4, "the file is cut back to the window")
    }

    @Test func extremeCountsSurviveTheFileAndTheReport() throws {
        let file = NSTemporaryDirectory() + "lag-history-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let first = try LagHistoryRecorder(capacity: 4, file: file)
        // A source that reports a high watermark of Int64.max: stored as Float 2^63, one past Int64.
        first.record(now: 1_000, rows: [row("t", 0, records: .max, seconds: 1e300)])
        let again = try LagHistoryRecorder(capacity: 4, file: file)  // reads and rewrites the file
        #expect(again.snapshot.points(.init(flow: "f", topic: "t", partition: 0)).first?.records == 9.223372036854775807e18)
        let html = LagHTMLReport(report: LagReport(rows: [row("t", 0, records: .max, seconds: 1e300)], flows: []), groups: [],
                                 histories: [again.snapshot], flows: [], generatedAt: Date(), notes: []).render()
        #expect(html.contains(">9223372036854775807<") && html.contains(">1e+300<") && html.contains("<circle"), "printed and charted, not trapped")
    }
}
