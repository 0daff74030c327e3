import NIOCore

/// Accumulates an encoded message.
///
/// Most bytes go into ``buffer``. A records field backed by a file (``KafkaRecords/file(_:)``) is not
/// copied: its length prefix is written and the region is remembered in ``fileSplices`` so the
/// transport can interleave buffer bytes and file regions (sendfile on plaintext sockets).
public struct KafkaWriter {
    /// A file region that belongs at `offset` of ``buffer`` (between buffer bytes `..<offset` and `offset...`).
    public struct FileSplice: Sendable {
        public var offset: Int
        public var region: FileRegion
    }

    public var buffer: ByteBuffer
    public private(set) var fileSplices: [FileSplice] = []

    public init(buffer: ByteBuffer = ByteBuffer()) {
        self.buffer = buffer
    }

    public init(capacity: Int) {
        self.buffer = ByteBufferAllocator().buffer(capacity: capacity)
    }

    /// Total encoded size including spliced file regions.
    public var totalBytes: Int {
        buffer.readableBytes + fileSplices.reduce(0) { $0 + $1.region.readableBytes }
    }

    @inlinable public mutating func writeBool(_ v: Bool) { buffer.writeInteger(v ? 1 : 0, as: Int8.self) }
    @inlinable public mutating func writeInt8(_ v: Int8) { buffer.writeInteger(v) }
    @inlinable public mutating func writeInt16(_ v: Int16) { buffer.writeInteger(v, endianness: .big) }
    @inlinable public mutating func writeUInt16(_ v: UInt16) { buffer.writeInteger(v, endianness: .big) }
    @inlinable public mutating func writeInt32(_ v: Int32) { buffer.writeInteger(v, endianness: .big) }
    @inlinable public mutating func writeUInt32(_ v: UInt32) { buffer.writeInteger(v, endianness: .big) }
    @inlinable public mutating func writeInt64(_ v: Int64) { buffer.writeInteger(v, endianness: .big) }
    @inlinable public mutating func writeFloat64(_ v: Double) { buffer.writeInteger(v.bitPattern, endianness: .big) }

    public mutating func writeUUID(_ v: KafkaUUID) {
        buffer.writeInteger(v.high, endianness: .big)
        buffer.writeInteger(v.low, endianness: .big)
    }

    @inlinable
    public mutating func writeUnsignedVarint(_ v: UInt32) {
        buffer.writeUnsignedVarint(v)
    }

    public mutating func writeString(_ s: String, flexible: Bool) {
        let n = s.utf8.count
        if flexible {
            buffer.writeUnsignedVarint(UInt32(n + 1))
        } else {
            buffer.writeInteger(Int16(truncatingIfNeeded: n), endianness: .big)
        }
        buffer.writeString(s)
    }

    public mutating func writeNullableString(_ s: String?, flexible: Bool, nullable: Bool) throws {
        if let s { return writeString(s, flexible: flexible) }
        guard nullable else { throw KafkaProtocolError.nullNotAllowed("string") }
        if flexible { buffer.writeUnsignedVarint(0) } else { buffer.writeInteger(Int16(-1), endianness: .big) }
    }

    public mutating func writeBytes(_ b: ByteBuffer, flexible: Bool) {
        if flexible {
            buffer.writeUnsignedVarint(UInt32(b.readableBytes + 1))
        } else {
            buffer.writeInteger(Int32(b.readableBytes), endianness: .big)
        }
        buffer.writeImmutableBuffer(b)
    }

    public mutating func writeNullableBytes(_ b: ByteBuffer?, flexible: Bool, nullable: Bool) throws {
        if let b { return writeBytes(b, flexible: flexible) }
        guard nullable else { throw KafkaProtocolError.nullNotAllowed("bytes") }
        writeNullLength(flexible: flexible)
    }

    public mutating func writeRecords(_ r: KafkaRecords?, flexible: Bool) {
        switch r {
        case nil:
            writeNullLength(flexible: flexible)
        case .bytes(let b)?:
            writeBytes(b, flexible: flexible)
        case .file(let region)?:
            if flexible {
                buffer.writeUnsignedVarint(UInt32(region.readableBytes + 1))
            } else {
                buffer.writeInteger(Int32(region.readableBytes), endianness: .big)
            }
            if region.readableBytes > 0 {
                fileSplices.append(FileSplice(offset: buffer.writerIndex, region: region))
            }
        }
    }

    public mutating func writeArrayCount(_ n: Int, flexible: Bool) {
        if flexible {
            buffer.writeUnsignedVarint(UInt32(n + 1))
        } else {
            buffer.writeInteger(Int32(n), endianness: .big)
        }
    }

    public mutating func writeNullArray(flexible: Bool, nullable: Bool) throws {
        guard nullable else { throw KafkaProtocolError.nullNotAllowed("array") }
        writeNullLength(flexible: flexible)
    }

    public mutating func writeNullStruct(nullable: Bool) throws {
        guard nullable else { throw KafkaProtocolError.nullNotAllowed("struct") }
        buffer.writeInteger(Int8(-1))
    }

    private mutating func writeNullLength(flexible: Bool) {
        if flexible { buffer.writeUnsignedVarint(0) } else { buffer.writeInteger(Int32(-1), endianness: .big) }
    }

    /// Writes a tagged-field section: known fields and preserved unknown ones, in ascending tag order.
    public mutating func writeTaggedFields(_ known: [TaggedField], unknown: [TaggedField]) {
        if known.isEmpty && unknown.isEmpty {
            buffer.writeInteger(UInt8(0))
            return
        }
        var all = known + unknown
        if !unknown.isEmpty { all.sort { $0.tag < $1.tag } }
        buffer.writeUnsignedVarint(UInt32(all.count))
        for f in all {
            buffer.writeUnsignedVarint(f.tag)
            buffer.writeUnsignedVarint(UInt32(f.data.readableBytes))
            buffer.writeImmutableBuffer(f.data)
        }
    }
}

extension ByteBuffer {
    @inlinable
    public mutating func writeUnsignedVarint(_ value: UInt32) {
        var v = value
        while v >= 0x80 {
            writeInteger(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        writeInteger(UInt8(truncatingIfNeeded: v))
    }

    @inlinable
    public mutating func writeVarint(_ value: Int32) {
        writeUnsignedVarint(UInt32(bitPattern: (value << 1) ^ (value >> 31)))
    }

    @inlinable
    public mutating func writeVarlong(_ value: Int64) {
        var v = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        while v >= 0x80 {
            writeInteger(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        writeInteger(UInt8(truncatingIfNeeded: v))
    }
}

/// Number of bytes `writeVarint` / `writeVarlong` produce.
@inlinable
public func varintSize(_ value: Int64) -> Int {
    var v = UInt64(bitPattern: (value << 1) ^ (value >> 63))
    var n = 1
    while v >= 0x80 { v >>= 7; n += 1 }
    return n
}
