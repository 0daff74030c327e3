import NIOCore

/// Throwing readers for the Kafka primitive types.
///
/// Every reader consumes bytes only on success; on failure the buffer's reader index is unspecified
/// and the message must be discarded. Lengths and counts are checked against the bytes that remain
/// so a hostile frame cannot make the decoder allocate more than the frame itself.
extension ByteBuffer {
    @inlinable
    public mutating func readKafkaInt8() throws -> Int8 {
        guard let v = readInteger(as: Int8.self) else { throw KafkaProtocolError.truncated("int8") }
        return v
    }

    @inlinable
    public mutating func readKafkaBool() throws -> Bool {
        try readKafkaInt8() != 0
    }

    @inlinable
    public mutating func readKafkaInt16() throws -> Int16 {
        guard let v = readInteger(endianness: .big, as: Int16.self) else { throw KafkaProtocolError.truncated("int16") }
        return v
    }

    @inlinable
    public mutating func readKafkaUInt16() throws -> UInt16 {
        guard let v = readInteger(endianness: .big, as: UInt16.self) else { throw KafkaProtocolError.truncated("uint16") }
        return v
    }

    @inlinable
    public mutating func readKafkaInt32() throws -> Int32 {
        guard let v = readInteger(endianness: .big, as: Int32.self) else { throw KafkaProtocolError.truncated("int32") }
        return v
    }

    @inlinable
    public mutating func readKafkaUInt32() throws -> UInt32 {
        guard let v = readInteger(endianness: .big, as: UInt32.self) else { throw KafkaProtocolError.truncated("uint32") }
        return v
    }

    @inlinable
    public mutating func readKafkaInt64() throws -> Int64 {
        guard let v = readInteger(endianness: .big, as: Int64.self) else { throw KafkaProtocolError.truncated("int64") }
        return v
    }

    @inlinable
    public mutating func readKafkaFloat64() throws -> Double {
        guard let bits = readInteger(endianness: .big, as: UInt64.self) else { throw KafkaProtocolError.truncated("float64") }
        return Double(bitPattern: bits)
    }

    public mutating func readKafkaUUID() throws -> KafkaUUID {
        guard let hi = readInteger(endianness: .big, as: UInt64.self),
              let lo = readInteger(endianness: .big, as: UInt64.self)
        else { throw KafkaProtocolError.truncated("uuid") }
        return KafkaUUID(high: hi, low: lo)
    }

    /// Unsigned LEB128 varint of at most 5 bytes, as used for compact lengths and tags.
    @inlinable
    public mutating func readUnsignedVarint() throws -> UInt32 {
        var result: UInt32 = 0
        var shift: UInt32 = 0
        while true {
            guard let byte = readInteger(as: UInt8.self) else { throw KafkaProtocolError.truncated("varint") }
            if shift == 28 && byte > 0x0F { throw KafkaProtocolError.malformedVarint }
            result |= UInt32(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// Zig-zag signed varint (32-bit), as used inside records.
    @inlinable
    public mutating func readVarint() throws -> Int32 {
        let raw = try readUnsignedVarint()
        return Int32(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// Zig-zag signed varlong (64-bit), as used for record timestamps.
    @inlinable
    public mutating func readVarlong() throws -> Int64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard let byte = readInteger(as: UInt8.self) else { throw KafkaProtocolError.truncated("varlong") }
            if shift == 63 && byte > 1 { throw KafkaProtocolError.malformedVarint }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
        }
        return Int64(bitPattern: (result >> 1) ^ (0 &- (result & 1)))
    }

    /// Reads the length prefix of a string/bytes/array: `nil` for null, else a length known to fit.
    @inlinable
    mutating func readKafkaLength(flexible: Bool, wide: Bool, what: String) throws -> Int? {
        let n: Int
        if flexible {
            let raw = try readUnsignedVarint()
            if raw == 0 { return nil }
            n = Int(raw) - 1
        } else if wide {
            let raw = try readKafkaInt32()
            if raw < 0 {
                guard raw == -1 else { throw KafkaProtocolError.invalidLength(what, Int(raw)) }
                return nil
            }
            n = Int(raw)
        } else {
            let raw = try readKafkaInt16()
            if raw < 0 {
                guard raw == -1 else { throw KafkaProtocolError.invalidLength(what, Int(raw)) }
                return nil
            }
            n = Int(raw)
        }
        guard n <= readableBytes else { throw KafkaProtocolError.invalidLength(what, n) }
        return n
    }

    public mutating func readKafkaNullableString(flexible: Bool) throws -> String? {
        guard let n = try readKafkaLength(flexible: flexible, wide: false, what: "string") else { return nil }
        guard let s = readString(length: n) else { throw KafkaProtocolError.truncated("string") }
        return s
    }

    public mutating func readKafkaString(flexible: Bool) throws -> String {
        guard let s = try readKafkaNullableString(flexible: flexible) else {
            throw KafkaProtocolError.nullNotAllowed("string")
        }
        return s
    }

    /// Bytes are returned as a slice sharing storage with this buffer.
    public mutating func readKafkaNullableBytes(flexible: Bool) throws -> ByteBuffer? {
        guard let n = try readKafkaLength(flexible: flexible, wide: true, what: "bytes") else { return nil }
        return try readKafkaSlice(length: n)
    }

    public mutating func readKafkaBytes(flexible: Bool) throws -> ByteBuffer {
        try readKafkaNullableBytes(flexible: flexible) ?? ByteBuffer()
    }

    public mutating func readKafkaRecords(flexible: Bool) throws -> KafkaRecords? {
        try readKafkaNullableBytes(flexible: flexible).map { .bytes($0) }
    }

    /// Array element count; `nil` for a null array. The count is bounded by the remaining bytes.
    public mutating func readKafkaArrayCount(flexible: Bool) throws -> Int? {
        try readKafkaLength(flexible: flexible, wide: true, what: "array")
    }

    /// Reads a tagged-field section (count, then tag/size/bytes per field) without interpreting it.
    public mutating func readTaggedFields() throws -> [TaggedField] {
        try readTaggedFields { _, _ in false }
    }

    /// Reads a tagged-field section. `known` gets each field's tag and bytes and returns whether it
    /// decoded the field; the fields it does not know are returned, so a re-encode keeps them.
    public mutating func readTaggedFields(decodingKnown known: (UInt32, inout ByteBuffer) throws -> Bool) throws -> [TaggedField] {
        let count = try readUnsignedVarint()
        guard count > 0 else { return [] }
        var unknown: [TaggedField] = []
        for _ in 0..<count {
            let tag = try readUnsignedVarint()
            var data = try readKafkaSlice(length: Int(try readUnsignedVarint()))
            if try !known(tag, &data) {
                unknown.append(TaggedField(tag: tag, data: data))
            }
        }
        return unknown
    }

    public mutating func readKafkaSlice(length: Int) throws -> ByteBuffer {
        guard length >= 0, let s = readSlice(length: length) else { throw KafkaProtocolError.truncated("\(length) bytes") }
        return s
    }
}
