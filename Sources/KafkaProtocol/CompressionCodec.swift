import CompressNIO
import NIOCore

/// The compression codec of a record batch (attributes bits 0–2).
///
/// Meridian compresses and decompresses gzip itself (zlib). Batches in other codecs are stored and
/// forwarded byte-for-byte; only a consumer that must read their records needs the codec.
public struct CompressionCodec: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int8
    public init(rawValue: Int8) { self.rawValue = rawValue }

    public static let none = CompressionCodec(rawValue: 0)
    public static let gzip = CompressionCodec(rawValue: 1)
    public static let snappy = CompressionCodec(rawValue: 2)
    public static let lz4 = CompressionCodec(rawValue: 3)
    public static let zstd = CompressionCodec(rawValue: 4)

    public init?(name: String) {
        switch name.lowercased() {
        case "none", "uncompressed": self = .none
        case "gzip": self = .gzip
        case "snappy": self = .snappy
        case "lz4": self = .lz4
        case "zstd": self = .zstd
        default: return nil
        }
    }

    public var description: String {
        switch rawValue {
        case 0: return "none"
        case 1: return "gzip"
        case 2: return "snappy"
        case 3: return "lz4"
        case 4: return "zstd"
        default: return "codec(\(rawValue))"
        }
    }

    /// Whether this build can compress and decompress the codec itself.
    public var isSupportedLocally: Bool { self == .none || self == .gzip }

    /// Compresses `input`'s readable bytes.
    public func compress(_ input: ByteBuffer) throws -> ByteBuffer {
        switch self {
        case .none: return input
        case .gzip:
            var copy = input
            do { return try copy.compress(with: .gzip()) } catch { throw KafkaProtocolError.compression("gzip: \(error)") }
        default:
            throw KafkaProtocolError.compression("\(self) is not supported for producing; use gzip or none")
        }
    }

    /// Decompresses `input`; refuses output larger than `maxSize` bytes (a decompression bomb guard).
    public func decompress(_ input: ByteBuffer, maxSize: Int = 256 << 20) throws -> ByteBuffer {
        switch self {
        case .none: return input
        case .gzip:
            var copy = input
            do {
                return try copy.decompress(with: .gzip(), maxSize: maxSize)
            } catch {
                throw KafkaProtocolError.compression("gzip: \(error)")
            }
        default:
            throw KafkaProtocolError.compression("\(self) batches cannot be decoded by this build (only none and gzip)")
        }
    }
}
