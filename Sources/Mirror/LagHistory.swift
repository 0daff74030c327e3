import DequeModule
import Foundation

/// Lag over time, one point per sample for every partition, for a bounded window (by default 24 h
/// at one point per 10 s: 8,640 points). A value type: the caller samples and gives the time.
///
/// Series share one time axis; a partition absent from a sample has no value there. Values are kept
/// as `Float` (8 bytes per partition per point: about 70 KB per partition for the default window).
public struct LagHistory: Sendable, Equatable {
    public struct Key: Hashable, Sendable, Comparable {
        public var flow: String
        public var topic: String
        public var partition: Int
        public init(flow: String, topic: String, partition: Int) {
            self.flow = flow
            self.topic = topic
            self.partition = partition
        }
        public static func < (a: Key, b: Key) -> Bool { (a.flow, a.topic, a.partition) < (b.flow, b.topic, b.partition) }
    }

    struct Values: Sendable, Equatable {
        var records = Deque<Float>()
        var seconds = Deque<Float>()
    }

    public let capacity: Int
    public private(set) var times = Deque<Int64>()
    private(set) var series: [Key: Values] = [:]

    public init(capacity: Int = 8_640) {
        self.capacity = max(1, capacity)
    }

    public var keys: [Key] { series.keys.sorted() }

    /// A Double as stored: within Float's finite range (JSON has no infinity), NaN kept as a gap.
    static func stored(_ v: Double) -> Float {
        v.isNaN ? .nan : Float(max(-Double(Float.greatestFiniteMagnitude), min(Double(Float.greatestFiniteMagnitude), v)))
    }

    /// A stored (Float) count back as a whole number: Float(Int64.max) is 2^63, one past what Int64
    /// holds, and a history file or a mirror's /history can hold any value.
    static func wholeRecords(_ v: Double) -> Int64 {
        guard v.isFinite else { return 0 }
        return v >= 9.2e18 ? .max : v <= -9.2e18 ? .min : Int64(v)
    }

    /// Adds a sample taken at `now` (ms since the epoch); the oldest point goes once the window is full.
    public mutating func record(now: Int64, rows: [LagReport.Row]) {
        guard now > (times.last ?? .min) else { return }
        let n = times.count
        times.append(now)
        var seen = Set<Key>()
        for r in rows {
            let k = Key(flow: r.flow, topic: r.topic, partition: r.partition)
            guard seen.insert(k).inserted else { continue }
            var v = series[k] ?? Values(records: Deque(repeating: .nan, count: n), seconds: Deque(repeating: .nan, count: n))
            v.records.append(Float(r.lagRecords))
            v.seconds.append(Self.stored(r.lagSeconds))
            series[k] = v
        }
        for k in series.keys where !seen.contains(k) {
            series[k]!.records.append(.nan)
            series[k]!.seconds.append(.nan)
        }
        if times.count > capacity {
            times.removeFirst()
            for k in Array(series.keys) {
                series[k]!.records.removeFirst()
                series[k]!.seconds.removeFirst()
                if series[k]!.records.allSatisfy(\.isNaN) { series[k] = nil }
            }
        }
    }

    /// A partition's points: records and seconds behind at each time (nil where it was absent).
    public func points(_ k: Key) -> [(time: Int64, records: Double?, seconds: Double?)] {
        guard let v = series[k] else { return [] }
        return times.indices.map { i in
            (times[i], v.records[i].isNaN ? nil : Double(v.records[i]), v.seconds[i].isNaN ? nil : Double(v.seconds[i]))
        }
    }

    /// A flow's total records behind and worst seconds behind at each time (nil where none of its
    /// partitions was sampled).
    public func flowPoints(_ flow: String) -> [(time: Int64, records: Double?, seconds: Double?)] {
        let mine = series.filter { $0.key.flow == flow }.map(\.value)
        return times.indices.map { i in
            var records: Double?, seconds: Double?
            for v in mine {
                if !v.records[i].isNaN { records = (records ?? 0) + Double(v.records[i]) }
                if !v.seconds[i].isNaN { seconds = max(seconds ?? 0, Double(v.seconds[i])) }
            }
            return (times[i], records, seconds)
        }
    }

    // MARK: JSON (the mirror's /history, and the lines of a history file)

    struct Encoded: Codable {
        struct Series: Codable {
            var flow: String
            var topic: String
            var partition: Int
            var records: [Float?]
            var seconds: [Float?]
        }
        var capacity: Int
        var times: [Int64]
        var series: [Series]
    }

    public func encode() throws -> Data {
        let e = Encoded(capacity: capacity, times: Array(times), series: keys.map { k in
            let v = series[k]!
            return .init(flow: k.flow, topic: k.topic, partition: k.partition,
                         records: v.records.map { $0.isNaN ? nil : $0 }, seconds: v.seconds.map { $0.isNaN ? nil : $0 })
        })
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return try encoder.encode(e)
    }

    public static func decode(_ data: Data) throws -> LagHistory {
        let e = try JSONDecoder().decode(Encoded.self, from: data)
        guard e.capacity > 0, e.times.count <= e.capacity, zip(e.times, e.times.dropFirst()).allSatisfy({ $0 < $1 }),
              e.series.allSatisfy({ $0.records.count == e.times.count && $0.seconds.count == e.times.count }) else {
            throw MirrorError.configuration("a lag history whose series do not match its times")
        }
        var h = LagHistory(capacity: e.capacity)
        h.times = Deque(e.times)
        for s in e.series {
            h.series[Key(flow: s.flow, topic: s.topic, partition: s.partition)] =
                Values(records: Deque(s.records.map { $0 ?? .nan }), seconds: Deque(s.seconds.map { $0 ?? .nan }))
        }
        return h
    }
}

/// The mirror's history: sampled from its flows every `interval`, served at /history, and, with a
/// file, appended to it one JSON line per sample so a restarted mirror keeps its charts (the file is
/// rewritten with only the window's points when it has grown to twice the window).
public final class LagHistoryRecorder: Sendable {
    private let lock = NSLock()
    private nonisolated(unsafe) var history: LagHistory
    private nonisolated(unsafe) var linesInFile = 0
    public let file: String?

    struct Line: Codable {
        var t: Int64
        var rows: [LagReport.Row]
    }

    /// Loads the points of `file` (when given and present) that fit the window.
    public init(capacity: Int = 8_640, file: String?) throws {
        self.file = file
        var h = LagHistory(capacity: capacity)
        var lines = 0
        if let file, let data = FileManager.default.contents(atPath: file) {
            let decoder = JSONDecoder()
            for line in data.split(separator: UInt8(ascii: "\n")) {
                // A line cut by a crash, or damaged, is skipped: the chart loses one point.
                guard let l = try? decoder.decode(Line.self, from: Data(line)) else { continue }
                h.record(now: l.t, rows: l.rows)
                lines += 1
            }
        }
        history = h
        linesInFile = lines
        if let file { try rewrite(file) }
    }

    public var snapshot: LagHistory { lock.withLock { history } }

    /// Adds a sample of `rows` at `now`, and appends it to the file.
    public func record(now: Int64, rows: [LagReport.Row]) {
        let rewriteNow: Bool = lock.withLock {
            history.record(now: now, rows: rows)
            linesInFile += 1
            return linesInFile > 2 * history.capacity
        }
        guard let file else { return }
        if rewriteNow {
            try? rewrite(file)
            return
        }
        guard let line = try? JSONEncoder().encode(Line(t: now, rows: rows)) else { return }
        if let h = FileHandle(forWritingAtPath: file) {
            h.seekToEndOfFile()
            h.write(line + Data("\n".utf8))
            try? h.close()
        }
    }

    /// Writes the window's points to `file` (through a temporary file and a rename).
    private func rewrite(_ file: String) throws {
        let (h, count): (LagHistory, Int) = lock.withLock { (history, history.times.count) }
        var out = Data()
        let encoder = JSONEncoder()
        let keys = h.keys
        let columns = keys.map { h.points($0) }
        for i in 0..<count {
            var rows: [LagReport.Row] = []
            for (k, pts) in zip(keys, columns) {
                guard let r = pts[i].records, let s = pts[i].seconds else { continue }
                rows.append(LagReport.Row(flow: k.flow, source: "", target: "", topic: k.topic, partition: k.partition, remoteTopic: "",
                                          lagRecords: LagHistory.wholeRecords(r), lagSeconds: s, state: "", transferP50Seconds: nil, transferP99Seconds: nil))
            }
            out += try encoder.encode(Line(t: h.times[i], rows: rows)) + Data("\n".utf8)
        }
        let tmp = file + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: out) else {
            throw MirrorError.configuration("cannot write the lag history file \(tmp); check the directory exists and is writable")
        }
        if rename(tmp, file) != 0 {
            throw MirrorError.configuration("cannot rename \(tmp) to \(file): \(String(cString: strerror(errno)))")
        }
        lock.withLock { linesInFile = count }
    }
}
