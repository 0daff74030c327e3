/// One direction of a simulated WAN link: when each chunk of bytes arrives at the far end, and
/// whether the link drops the connection. A value type with its own seeded random numbers and no
/// clock: the caller gives the time (nanoseconds ≥ 0 from any origin), so it is tested without sockets.
///
/// - latency: one-way delay of every chunk, plus a uniform random jitter in `0...jitter`;
/// - bandwidth: a chunk takes `bytes × 8 / bitsPerSecond` on the wire, one after the other (what a
///   token bucket with a small bucket amounts to);
/// - order: a chunk never arrives before the one sent before it (TCP delivers in order, so jitter
///   only ever delays);
/// - loss: each chunk ends the connection with probability `loss` (TCP hides a lost packet as a
///   stall; a simulator that cannot stall the kernel's TCP cuts the connection instead, which the
///   clients must survive anyway).
public struct LinkModel: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        public var latencyNanos: Int64 = 0
        public var jitterNanos: Int64 = 0
        /// Bits per second; 0 means unlimited.
        public var bitsPerSecond: Int64 = 0
        /// Probability in 0...1 that a chunk cuts the connection.
        public var loss: Double = 0

        public init(latencyNanos: Int64 = 0, jitterNanos: Int64 = 0, bitsPerSecond: Int64 = 0, loss: Double = 0) {
            self.latencyNanos = latencyNanos
            self.jitterNanos = jitterNanos
            self.bitsPerSecond = bitsPerSecond
            self.loss = loss
        }

        public var isTransparent: Bool { latencyNanos == 0 && jitterNanos == 0 && bitsPerSecond == 0 && loss == 0 }
    }

    public enum Fate: Sendable, Equatable {
        /// Deliver at this time.
        case deliver(at: Int64)
        /// The link drops the connection.
        case cut
    }

    public var settings: Settings
    /// When the wire is free for the next chunk.
    private var wireFreeAt: Int64 = 0
    /// When the last chunk arrives (the next may not arrive earlier).
    private var lastArrival: Int64 = 0
    private var rng: UInt64

    public init(_ settings: Settings, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) {
        self.settings = settings
        rng = seed == 0 ? 1 : seed
    }

    /// The fate of `bytes` bytes handed to the link at `now`.
    public mutating func send(bytes: Int, now: Int64) -> Fate {
        if settings.loss > 0, nextUnit() < settings.loss { return .cut }
        var departure = now
        if settings.bitsPerSecond > 0 {
            let start = max(now, wireFreeAt)
            let wire = Int64((Double(bytes) * 8 / Double(settings.bitsPerSecond) * 1e9).rounded(.up))
            departure = start + wire
            wireFreeAt = departure
        }
        var arrival = departure + settings.latencyNanos
        if settings.jitterNanos > 0 { arrival += Int64(nextUnit() * Double(settings.jitterNanos)) }
        arrival = max(arrival, lastArrival)
        lastArrival = arrival
        return .deliver(at: arrival)
    }

    /// How far ahead of `now` the wire is booked (what a sender should wait for before sending more).
    public func backlogNanos(now: Int64) -> Int64 { max(0, wireFreeAt - now) }

    /// Uniform in [0, 1) (xorshift64*).
    private mutating func nextUnit() -> Double {
        rng ^= rng >> 12
        rng ^= rng << 25
        rng ^= rng >> 27
        let x = rng &* 2_685_821_657_736_338_717
        return Double(x >> 11) / Double(1 << 53)
    }
}

extension LinkModel.Settings {
    /// Parses `40ms`, `1.5s`, `200us` (a bare number is milliseconds).
    public static func parseDuration(_ s: String) -> Int64? {
        let t = s.trimmingCharacters(in: .whitespaces).lowercased()
        for (suffix, factor) in [("ms", 1e6), ("us", 1e3), ("ns", 1.0), ("s", 1e9)] where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count)), v >= 0, v < 3600 else { return nil }
            return Int64((v * factor).rounded())
        }
        guard let v = Double(t), v >= 0, v < 3_600_000 else { return nil }
        return Int64((v * 1e6).rounded())
    }

    /// Parses `100mbit`, `1gbit`, `500kbit`, `10mbyte` (per second; a bare number is bits per second).
    public static func parseBandwidth(_ s: String) -> Int64? {
        let t = s.trimmingCharacters(in: .whitespaces).lowercased().replacingOccurrences(of: "/s", with: "").replacingOccurrences(of: "ps", with: "")
        for (suffix, factor) in [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("gbyte", 8e9), ("mbyte", 8e6), ("kbyte", 8e3), ("bit", 1.0)]
        where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count)), v > 0, v < 1e6 else { return nil }
            return Int64((v * factor).rounded())
        }
        guard let v = Double(t), v >= 1, v < 1e13 else { return nil }
        return Int64(v)
    }

    /// Parses `0.1%` or `0.001` into a probability.
    public static func parseLoss(_ s: String) -> Double? {
        let t = s.trimmingCharacters(in: .whitespaces)
        if t.hasSuffix("%") {
            guard let v = Double(t.dropLast()), v >= 0, v <= 100 else { return nil }
            return v / 100
        }
        guard let v = Double(t), v >= 0, v <= 1 else { return nil }
        return v
    }
}

import Foundation
