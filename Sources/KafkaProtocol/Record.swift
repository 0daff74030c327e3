import NIOCore

/// One record header: a string key and a nullable value.
public struct RecordHeader: Sendable, Equatable {
    public var key: String
    public var value: ByteBuffer?

    public init(key: String, value: ByteBuffer?) {
        self.key = key
        self.value = value
    }
}

/// A decoded record with its absolute offset and timestamp. Key and value share storage with the batch.
public struct Record: Sendable, Equatable {
    public var offset: Int64
    public var timestamp: Int64
    public var key: ByteBuffer?
    public var value: ByteBuffer?
    public var headers: [RecordHeader]

    public init(offset: Int64, timestamp: Int64, key: ByteBuffer?, value: ByteBuffer?, headers: [RecordHeader] = []) {
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers
    }

    /// Decodes one record (`length varint, attributes, timestampDelta varlong, offsetDelta varint,
    /// key, value, headers`) from the front of `buffer`.
    public init(decoding buffer: inout ByteBuffer, baseOffset: Int64, baseTimestamp: Int64) throws {
        let length = Int(try buffer.readVarint())
        guard length > 0, length <= buffer.readableBytes else {
            throw KafkaProtocolError.invalidRecordBatch("record length \(length) with \(buffer.readableBytes) bytes left")
        }
        var r = buffer.readSlice(length: length)!
        _ = try r.readKafkaInt8()  // attributes, unused in v2
        let tsDelta = try r.readVarlong()
        let offDelta = try r.readVarint()
        offset = baseOffset &+ Int64(offDelta)
        timestamp = baseTimestamp &+ tsDelta
        key = try Record.readVarBytes(&r)
        value = try Record.readVarBytes(&r)
        let hc = Int(try r.readVarint())
        guard hc >= 0, hc <= r.readableBytes else {
            throw KafkaProtocolError.invalidRecordBatch("record header count \(hc)")
        }
        headers = []
        headers.reserveCapacity(hc)
        for _ in 0..<hc {
            guard let kb = try Record.readVarBytes(&r), let k = kb.getString(at: kb.readerIndex, length: kb.readableBytes) else {
                throw KafkaProtocolError.invalidRecordBatch("record header with a null key")
            }
            headers.append(RecordHeader(key: k, value: try Record.readVarBytes(&r)))
        }
    }

    static func readVarBytes(_ r: inout ByteBuffer) throws -> ByteBuffer? {
        let n = Int(try r.readVarint())
        if n < 0 { return nil }
        guard n <= r.readableBytes else { throw KafkaProtocolError.truncated("record field of \(n) bytes") }
        return r.readSlice(length: n)!
    }

    static func writeVarBytes(_ b: ByteBuffer?, to out: inout ByteBuffer) {
        guard let b else { out.writeVarint(-1); return }
        out.writeVarint(Int32(b.readableBytes))
        out.writeImmutableBuffer(b)
    }

    /// Size of the body (everything after the length varint) when encoded with these deltas.
    static func bodySize(timestampDelta: Int64, offsetDelta: Int32, key: ByteBuffer?, value: ByteBuffer?,
                         headers: [RecordHeader]) -> Int {
        var n = 1 + varintSize(timestampDelta) + varintSize(Int64(offsetDelta))
        n += key.map { varintSize(Int64($0.readableBytes)) + $0.readableBytes } ?? 1
        n += value.map { varintSize(Int64($0.readableBytes)) + $0.readableBytes } ?? 1
        n += varintSize(Int64(headers.count))
        for h in headers {
            let kl = h.key.utf8.count
            n += varintSize(Int64(kl)) + kl
            n += h.value.map { varintSize(Int64($0.readableBytes)) + $0.readableBytes } ?? 1
        }
        return n
    }
}
