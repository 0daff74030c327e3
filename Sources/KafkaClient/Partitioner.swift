import KafkaProtocol
import NIOCore

/// Chooses the partition of a record from its key.
///
/// - ``murmur2``: the Java client's default (and librdkafka's `murmur2_random`): Kafka's murmur2 of
///   the key bytes, made positive by masking the sign bit, modulo the partition count. Records
///   without a key stick to one partition until its batch is sent (Kafka's sticky partitioning).
/// - ``consistentRandom``: librdkafka's default `consistent_random`: CRC-32 (IEEE) of the key
///   modulo the partition count; records without a key go to a random partition.
public enum Partitioner: Sendable, Equatable {
    case murmur2
    case consistentRandom

    public init?(name: String) {
        switch name.lowercased() {
        case "murmur2", "murmur2_random", "java", "default": self = .murmur2
        case "consistent_random", "crc32", "librdkafka": self = .consistentRandom
        default: return nil
        }
    }

    /// Partition for a keyed record, or nil for a null key (the caller applies stickiness).
    public func partition(forKey key: ByteBuffer, partitions: Int32) -> Int32 {
        key.withUnsafeReadableBytes { bytes in
            switch self {
            case .murmur2:
                return Int32((UInt32(bitPattern: Self.murmur2(bytes)) & 0x7FFF_FFFF) % UInt32(partitions))
            case .consistentRandom:
                return Int32(Self.crc32(bytes) % UInt32(partitions))
            }
        }
    }

    /// Kafka's 32-bit murmur2 (seed 0x9747b28c), as `org.apache.kafka.common.utils.Utils.murmur2`.
    public static func murmur2(_ data: UnsafeRawBufferPointer) -> Int32 {
        let m: UInt32 = 0x5BD1_E995
        let r: UInt32 = 24
        let length = data.count
        var h: UInt32 = 0x9747_B28C ^ UInt32(truncatingIfNeeded: length)
        let quads = length / 4
        for i in 0..<quads {
            let o = i * 4
            var k = UInt32(data[o]) | (UInt32(data[o + 1]) << 8) | (UInt32(data[o + 2]) << 16) | (UInt32(data[o + 3]) << 24)
            k = k &* m
            k ^= k >> r
            k = k &* m
            h = h &* m
            h ^= k
        }
        let tail = length & ~3
        switch length % 4 {
        case 3:
            h ^= UInt32(data[tail + 2]) << 16
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h = h &* m
        case 2:
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h = h &* m
        case 1:
            h ^= UInt32(data[tail])
            h = h &* m
        default:
            break
        }
        h ^= h >> 13
        h = h &* m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }

    /// CRC-32 (IEEE 802.3, as zlib's `crc32`): librdkafka's consistent-random partitioner.
    public static func crc32(_ data: UnsafeRawBufferPointer) -> UInt32 {
        CRC32.checksum(data)
    }
}
