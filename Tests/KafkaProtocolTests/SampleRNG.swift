import NIOCore
@testable import KafkaProtocol

/// Deterministic generator (SplitMix64) for the round-trip samples, so a failure is reproducible.
struct SampleRNG {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bool() -> Bool { next() & 1 == 1 }
    mutating func oneIn(_ n: UInt64) -> Bool { next() % n == 0 }

    mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T {
        T(truncatingIfNeeded: next())
    }

    mutating func double() -> Double { Double(next() % 1_000_000) / 7.0 }

    mutating func string() -> String {
        let n = Int(next() % 12)
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz-._0123456789é")
        return String((0..<n).map { _ in alphabet[Int(next() % UInt64(alphabet.count))] })
    }

    mutating func bytes() -> ByteBuffer {
        let n = Int(next() % 40)
        var b = ByteBuffer()
        for _ in 0..<n { b.writeInteger(UInt8(truncatingIfNeeded: next())) }
        return b
    }

    mutating func uuid() -> KafkaUUID { KafkaUUID(high: next(), low: next()) }

    mutating func array<T>(_ make: (inout SampleRNG) -> T) -> [T] {
        let n = Int(next() % 3)
        var out: [T] = []
        for _ in 0..<n { out.append(make(&self)) }
        return out
    }
}

/// A generated message that can build a random instance valid for a given version.
protocol SampledMessage: KafkaMessage {
    static func randomSample(version: Int16, rng: inout SampleRNG) -> Self
}
