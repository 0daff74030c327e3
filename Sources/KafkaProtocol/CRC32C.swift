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
