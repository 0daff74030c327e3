import CCRC32C
import NIOCore

/// CRC-32C (Castagnoli), the checksum of v2 record batches.
///
/// ``checksum(_:)`` uses the CPU's CRC instruction when there is one (SSE4.2 on x86-64, the CRC
/// extension on arm64) and a slicing-by-8 table otherwise; both are exposed for testing.
public enum CRC32C {
    public static var isHardwareAccelerated: Bool { meridian_crc32c_hardware_available() != 0 }

    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        meridian_crc32c(crc, bytes.baseAddress, bytes.count)
    }

    public static func softwareChecksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        meridian_crc32c_software(crc, bytes.baseAddress, bytes.count)
    }

    /// Hardware checksum; returns nil when the CPU has no CRC-32C instruction.
    public static func hardwareChecksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32? {
        guard isHardwareAccelerated else { return nil }
        return meridian_crc32c_hardware(crc, bytes.baseAddress, bytes.count)
    }

    /// Checksum of `length` bytes of `buffer` starting at absolute index `at` (reader index unchanged).
    @inlinable
    public static func checksum(_ buffer: ByteBuffer, at index: Int, length: Int) -> UInt32 {
        buffer.withUnsafeReadableBytes { raw in
            let start = index - buffer.readerIndex
            return checksum(UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)]))
        }
    }

    public static func checksum<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 {
        let a = Array(bytes)
        return a.withUnsafeBytes { checksum($0) }
    }
}

extension CRC32C {
    /// The Castagnoli polynomial, bit-reflected (bit 31 is the coefficient of x^0).
    static let reflectedPolynomial: UInt32 = 0x82F6_3B78

    /// `a · b mod P` for polynomials in reflected form.
    static func multiplyModP(_ a: UInt32, _ b: UInt32) -> UInt32 {
        var product: UInt32 = 0
        var a = a
        var b = b
        while a != 0 {
            if a & 0x8000_0000 != 0 { product ^= b }
            a <<= 1
            // b · x: one degree up, x^32 folded back in as P's lower terms.
            b = b & 1 != 0 ? (b >> 1) ^ reflectedPolynomial : b >> 1
        }
        return product
    }

    /// `x^(8n) mod P`: what feeding `n` zero bytes multiplies a CRC register (without the
    /// initial and final inversion) by. O(log n).
    static func zeroBytesFactor(_ n: Int) -> UInt32 {
        var result: UInt32 = 0x8000_0000  // 1
        var power: UInt32 = 0x0080_0000  // x^8
        var n = n
        while n > 0 {
            if n & 1 != 0 { result = multiplyModP(result, power) }
            power = multiplyModP(power, power)
            n >>= 1
        }
        return result
    }

    /// The checksum of a `length`-byte message after its bytes at `offset` changed from `old` to
    /// `new`, from `crc`, the checksum before the change: a CRC is linear, so only the changed
    /// bytes are read and the rest is accounted for in O(log length). Nil when the change does
    /// not fit in the message or `old` and `new` differ in length.
    public static func updating(_ crc: UInt32, length: Int, changedAt offset: Int, from old: [UInt8], to new: [UInt8]) -> UInt32? {
        guard old.count == new.count, offset >= 0, offset <= length, old.count <= length - offset else { return nil }
        let delta = zip(old, new).map { $0 ^ $1 }
        // The register after the delta alone, from zero and without the final inversion.
        let register = delta.withUnsafeBytes { ~checksum($0, continuing: 0xFFFF_FFFF) }
        return crc ^ multiplyModP(zeroBytesFactor(length - offset - old.count), register)
    }
}
