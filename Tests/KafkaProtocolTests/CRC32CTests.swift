import Foundation
import NIOCore
import Testing
@testable import KafkaProtocol

@Suite("CRC-32C", .timeLimit(.minutes(2)))
struct CRC32CTests {
    /// RFC 3720 (iSCSI) appendix B.4 vectors plus the common "123456789" check value.
    static let vectors: [([UInt8], UInt32)] = [
        (Array("123456789".utf8), 0xE306_9283),
        ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        ((0..<32).map { UInt8($0) }, 0x46DD_794E),
        ((0..<32).reversed().map { UInt8($0) }, 0x113F_DB5C),
        ([], 0),
    ]

    @Test(arguments: 0..<vectors.count)
    func softwareMatchesKnownVectors(_ i: Int) {
        let (bytes, expected) = Self.vectors[i]
        #expect(bytes.withUnsafeBytes { CRC32C.softwareChecksum($0) } == expected)
    }

    @Test(arguments: 0..<vectors.count)
    func hardwareMatchesKnownVectors(_ i: Int) throws {
        #if arch(x86_64) || arch(arm64)
        // Every x86-64 CPU this project targets has SSE4.2 and every arm64 server has CRC32.
        #expect(CRC32C.isHardwareAccelerated, "no CRC-32C instruction detected on this CPU")
        #endif
        guard CRC32C.isHardwareAccelerated else { return }
        let (bytes, expected) = Self.vectors[i]
        #expect(bytes.withUnsafeBytes { CRC32C.hardwareChecksum($0) } == expected)
    }

    @Test func implementationsAgreeOnEveryLengthAndAlignment() {
        var rng = SampleRNG(seed: 42)
        let data = (0..<4096).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        data.withUnsafeBytes { raw in
            for start in 0..<9 {
                for length in [0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 1000, 4000] where start + length <= raw.count {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)])
                    let sw = CRC32C.softwareChecksum(slice)
                    #expect(CRC32C.checksum(slice) == sw)
                    if let hw = CRC32C.hardwareChecksum(slice) { #expect(hw == sw) }
                }
            }
        }
    }

    @Test func continuingAChecksumEqualsOneShot() {
        let a = Array("12345".utf8), b = Array("6789".utf8)
        let partial = a.withUnsafeBytes { CRC32C.checksum($0) }
        let whole = b.withUnsafeBytes { CRC32C.checksum($0, continuing: partial) }
        #expect(whole == 0xE306_9283)
    }

    @Test func aChangedRangeUpdatesTheChecksumAsAFullPassWould() {
        // MERIDIAN_TEST_SEED replays a run; the failure message names the seed.
        let seed = ProcessInfo.processInfo.environment["MERIDIAN_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
        var rng = SeededGenerator(seed: seed)
        for length in [1, 14, 15, 61, 1000, 262_144] {
            var data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let before = data.withUnsafeBytes { CRC32C.checksum($0) }
            for _ in 0..<5 {
                let count = Int.random(in: 0...min(14, length), using: &rng)
                let offset = Int.random(in: 0...(length - count), using: &rng)
                let old = Array(data[offset..<(offset + count)])
                let new = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
                var changed = data
                changed.replaceSubrange(offset..<(offset + count), with: new)
                let full = changed.withUnsafeBytes { CRC32C.checksum($0) }
                #expect(CRC32C.updating(before, length: length, changedAt: offset, from: old, to: new) == full,
                        "seed \(seed): length \(length), \(count) bytes at \(offset)")
            }
            data[0] ^= 0xFF
        }
        #expect(CRC32C.updating(0, length: 10, changedAt: 8, from: [1, 2, 3], to: [4, 5, 6]) == nil, "a change past the end")
    }
}

/// SplitMix64: a seeded generator, so a failing case can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
