import NIOCore

/// The fixed 61-byte header of a v2 record batch.
///
/// Byte layout (all big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12,
/// magic i8 @16, crc u32 @17, attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27,
/// maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53,
/// recordsCount i32 @57. The CRC covers bytes 21 to the end of the batch.
public struct RecordBatchHeader: Sendable, Equatable {
    public static let size = 61
    /// Bytes before `batchLength`'s coverage starts: baseOffset and batchLength themselves.
    public static let logOverhead = 12
    public static let crcOffset = 17
    public static let attributesOffset = 21
    public static let maxTimestampOffset = 35

    public var baseOffset: Int64
    public var batchLength: Int32
    public var partitionLeaderEpoch: Int32
    public var magic: Int8
    public var crc: UInt32
    public var attributes: Int16
    public var lastOffsetDelta: Int32
    public var baseTimestamp: Int64
    public var maxTimestamp: Int64
    public var producerID: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var recordsCount: Int32

    /// Reads the header at absolute index `index` without moving the reader index.
    /// Only checks that 61 bytes are there; ``RecordBatch/validate(_:at:)`` checks the rest.
    public init(_ buffer: ByteBuffer, at index: Int) throws {
        guard index >= buffer.readerIndex, index + Self.size <= buffer.writerIndex else {
            throw KafkaProtocolError.truncated("record batch header")
        }
        baseOffset = buffer.getInteger(at: index, endianness: .big)!
        batchLength = buffer.getInteger(at: index + 8, endianness: .big)!
        partitionLeaderEpoch = buffer.getInteger(at: index + 12, endianness: .big)!
        magic = buffer.getInteger(at: index + 16)!
        crc = buffer.getInteger(at: index + 17, endianness: .big)!
        attributes = buffer.getInteger(at: index + 21, endianness: .big)!
        lastOffsetDelta = buffer.getInteger(at: index + 23, endianness: .big)!
        baseTimestamp = buffer.getInteger(at: index + 27, endianness: .big)!
        maxTimestamp = buffer.getInteger(at: index + 35, endianness: .big)!
        producerID = buffer.getInteger(at: index + 43, endianness: .big)!
        producerEpoch = buffer.getInteger(at: index + 51, endianness: .big)!
        baseSequence = buffer.getInteger(at: index + 53, endianness: .big)!
        recordsCount = buffer.getInteger(at: index + 57, endianness: .big)!
    }

    public init(
        baseOffset: Int64 = 0, batchLength: Int32 = 0, partitionLeaderEpoch: Int32 = -1, magic: Int8 = 2,
        crc: UInt32 = 0, attributes: Int16 = 0, lastOffsetDelta: Int32 = 0, baseTimestamp: Int64 = 0,
        maxTimestamp: Int64 = 0, producerID: Int64 = -1, producerEpoch: Int16 = -1, baseSequence: Int32 = -1,
        recordsCount: Int32 = 0
    ) {
        self.baseOffset = baseOffset
        self.batchLength = batchLength
        self.partitionLeaderEpoch = partitionLeaderEpoch
        self.magic = magic
        self.crc = crc
        self.attributes = attributes
        self.lastOffsetDelta = lastOffsetDelta
        self.baseTimestamp = baseTimestamp
        self.maxTimestamp = maxTimestamp
        self.producerID = producerID
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
        self.recordsCount = recordsCount
    }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(baseOffset, endianness: .big)
        buffer.writeInteger(batchLength, endianness: .big)
        buffer.writeInteger(partitionLeaderEpoch, endianness: .big)
        buffer.writeInteger(magic)
        buffer.writeInteger(crc, endianness: .big)
        buffer.writeInteger(attributes, endianness: .big)
        buffer.writeInteger(lastOffsetDelta, endianness: .big)
        buffer.writeInteger(baseTimestamp, endianness: .big)
        buffer.writeInteger(maxTimestamp, endianness: .big)
        buffer.writeInteger(producerID, endianness: .big)
        buffer.writeInteger(producerEpoch, endianness: .big)
        buffer.writeInteger(baseSequence, endianness: .big)
        buffer.writeInteger(recordsCount, endianness: .big)
    }

    /// Size of the whole batch in bytes, header included.
    public var totalSize: Int { Self.logOverhead + Int(batchLength) }
    public var lastOffset: Int64 { baseOffset + Int64(lastOffsetDelta) }
    /// Offset just after this batch.
    public var nextOffset: Int64 { lastOffset + 1 }
    public var compression: CompressionCodec { CompressionCodec(rawValue: Int8(attributes & 0x7)) }
    public var isLogAppendTime: Bool { attributes & 0x8 != 0 }
    public var isTransactional: Bool { attributes & 0x10 != 0 }
    public var isControl: Bool { attributes & 0x20 != 0 }
    public var hasProducerID: Bool { producerID >= 0 }
    /// Sequence of the last record, wrapping past Int32.max as Kafka does.
    public var lastSequence: Int32 {
        baseSequence < 0 ? -1 : Int32(truncatingIfNeeded: (Int64(baseSequence) + Int64(lastOffsetDelta)) % (Int64(Int32.max) + 1))
    }
}
