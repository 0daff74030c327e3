import NIOCore

/// Messages in Kafka's message formats v0 and v1 (before record batches; Kafka before 0.11), read
/// only: a mirror meets them in the old data of a source cluster and copies them as v2 batches.
///
/// A message is: offset int64, size int32 (bytes after it), crc uint32 (CRC-32 of the bytes after
/// it), magic int8, attributes int8 (codec in bits 0–2; in v1 bit 3 is LogAppendTime), in v1 a
/// timestamp int64, then key and value as an int32 length (−1: null) and bytes. A compressed
/// message (a wrapper) carries a whole message set, compressed, as its value. In v1 the inner
/// offsets are relative, and the wrapper carries the absolute offset of the last inner message;
/// in v0 inner offsets are absolute. A v1 wrapper with LogAppendTime gives its timestamp to every
/// inner message. v0 messages have no timestamp (−1).
public enum LegacyMessageSet {
    /// Smallest message: offset, size, crc, magic, attributes, key length, value length.
    public static let minimumSize = 26

    public struct Message: Sendable {
        /// The message's records (a wrapper's inner messages), absolute offsets in increasing order.
        public var records: [Record]
        /// Bytes the message takes in its set.
        public var size: Int
        /// The wrapper's codec (`.none` for a plain message).
        public var compression: CompressionCodec
        /// The offset the message set continues after.
        public var lastOffset: Int64
    }

    /// The message at `index` of `buffer` (which must hold all of it), with a wrapper's inner
    /// messages decompressed and their offsets made absolute. Every length, offset and checksum
    /// is checked: the bytes come from another cluster.
    public static func message(in buffer: ByteBuffer, at index: Int, maxDecompressedBytes: Int = 256 << 20) throws -> Message {
        let outer = try parse(buffer, at: index)
        let codecBits = outer.attributes & 0x7
        guard codecBits != 0 else {
            let r = Record(offset: outer.offset, timestamp: outer.timestamp, key: outer.key, value: outer.value)
            return Message(records: [r], size: outer.size, compression: .none, lastOffset: outer.offset)
        }
        let codec = CompressionCodec(rawValue: codecBits)
        guard codec.isSupportedLocally else {
            throw KafkaProtocolError.invalidRecordBatch("message at offset \(outer.offset) (format v\(outer.magic)) is compressed with codec \(codecBits), which this build cannot decompress")
        }
        guard let compressed = outer.value else {
            throw KafkaProtocolError.invalidRecordBatch("compressed message at offset \(outer.offset) has no value")
        }
        let inner = try codec.decompress(compressed, maxSize: maxDecompressedBytes)
        var parsed: [Parsed] = []
        var i = inner.readerIndex
        while i < inner.writerIndex {
            let m = try parse(inner, at: i)
            guard m.attributes & 0x7 == 0 else {
                throw KafkaProtocolError.invalidRecordBatch("compressed message at offset \(outer.offset) nests another compressed message")
            }
            parsed.append(m)
            i += m.size
        }
        guard let last = parsed.last else {
            throw KafkaProtocolError.invalidRecordBatch("compressed message at offset \(outer.offset) holds no messages")
        }
        let logAppendTime = outer.magic == 1 && outer.attributes & 0x8 != 0
        var records: [Record] = []
        records.reserveCapacity(parsed.count)
        for m in parsed {
            var offset = m.offset
            if outer.magic == 1 {
                // Relative inner offsets: the last one is the wrapper's offset.
                let (shift, o1) = outer.offset.subtractingReportingOverflow(last.offset)
                let (absolute, o2) = shift.addingReportingOverflow(m.offset)
                guard !o1, !o2 else {
                    throw KafkaProtocolError.invalidRecordBatch("compressed message at offset \(outer.offset) has inner offset \(m.offset) out of range")
                }
                offset = absolute
            }
            guard offset >= 0, offset > (records.last?.offset ?? -1) else {
                throw KafkaProtocolError.invalidRecordBatch("compressed message at offset \(outer.offset) has inner offsets out of order")
            }
            let timestamp = logAppendTime ? outer.timestamp : (m.magic == 1 ? m.timestamp : -1)
            records.append(Record(offset: offset, timestamp: timestamp, key: m.key, value: m.value))
        }
        return Message(records: records, size: outer.size, compression: codec, lastOffset: max(outer.offset, records.last!.offset))
    }

    private struct Parsed {
        var offset: Int64
        var size: Int
        var magic: Int8
        var attributes: Int8
        var timestamp: Int64
        var key: ByteBuffer?
        var value: ByteBuffer?
    }

    private static func parse(_ buffer: ByteBuffer, at index: Int) throws -> Parsed {
        guard index >= buffer.readerIndex, buffer.writerIndex - index >= minimumSize,
              let offset = buffer.getInteger(at: index, as: Int64.self),
              let size32 = buffer.getInteger(at: index + 8, as: Int32.self),
              let crc = buffer.getInteger(at: index + 12, as: UInt32.self),
              let magic = buffer.getInteger(at: index + 16, as: Int8.self),
              let attributes = buffer.getInteger(at: index + 17, as: Int8.self)
        else { throw KafkaProtocolError.truncated("legacy message") }
        // Offsets come from another cluster; the set continues after the last one, so it must leave room.
        guard offset >= 0, offset < Int64.max else {
            throw KafkaProtocolError.invalidRecordBatch("message with offset \(offset) cannot be right")
        }
        guard magic == 0 || magic == 1 else {
            throw KafkaProtocolError.invalidRecordBatch("message at offset \(offset) has magic \(magic) in a legacy message set")
        }
        let headerAfterSize = magic == 1 ? 22 : 14  // crc, magic, attributes, (timestamp), key and value lengths
        guard size32 >= Int32(headerAfterSize) else {
            throw KafkaProtocolError.invalidRecordBatch("message at offset \(offset) has size \(size32)")
        }
        let end = index + 12 + Int(size32)
        guard end <= buffer.writerIndex else { throw KafkaProtocolError.truncated("legacy message at offset \(offset)") }
        guard CRC32.checksum(buffer, from: index + 16, to: end) == crc else {
            throw KafkaProtocolError.invalidRecordBatch("message at offset \(offset) fails its CRC")
        }
        var p = index + 18
        var timestamp: Int64 = -1
        if magic == 1 {
            timestamp = buffer.getInteger(at: p, as: Int64.self)!
            p += 8
        }
        func bytes() throws -> ByteBuffer? {
            guard p + 4 <= end, let n = buffer.getInteger(at: p, as: Int32.self) else {
                throw KafkaProtocolError.truncated("legacy message at offset \(offset)")
            }
            p += 4
            if n == -1 { return nil }
            guard n >= 0, Int(n) <= end - p else {
                throw KafkaProtocolError.invalidRecordBatch("message at offset \(offset) has a field of length \(n) in \(end - p) bytes")
            }
            defer { p += Int(n) }
            return buffer.getSlice(at: p, length: Int(n))
        }
        let key = try bytes()
        let value = try bytes()
        guard p == end else {
            throw KafkaProtocolError.invalidRecordBatch("message at offset \(offset) has \(end - p) bytes after its value")
        }
        return Parsed(offset: offset, size: end - index, magic: magic, attributes: attributes, timestamp: timestamp, key: key, value: value)
    }
}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, as zlib's `crc32`): the checksum of
/// message formats v0 and v1, and of librdkafka's consistent-random partitioner.
public enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    /// The checksum of `buffer`'s bytes in `from..<to` (indices of the buffer, within its readable bytes).
    public static func checksum(_ buffer: ByteBuffer, from: Int, to: Int) -> UInt32 {
        buffer.withUnsafeReadableBytes { raw in
            checksum(UnsafeRawBufferPointer(rebasing: raw[(from - buffer.readerIndex)..<(to - buffer.readerIndex)]))
        }
    }
}
