import NIOCore

/// The payload of a `records` field: zero or more record batches, kept as bytes.
///
/// Decoding always yields ``bytes(_:)`` (a slice of the received frame). The broker answers fetches
/// with ``file(_:)`` so the batches travel from the segment file to the socket without a copy.
public enum KafkaRecords: Sendable, Equatable {
    case bytes(ByteBuffer)
    case file(FileRegion)

    public var byteCount: Int {
        switch self {
        case .bytes(let b): return b.readableBytes
        case .file(let f): return f.readableBytes
        }
    }
}
