import NIOCore

// The consumer protocol's subscription and assignment travel inside JoinGroup/SyncGroup as bytes
// that start with their own int16 schema version, followed by the versioned struct.

extension KafkaMessage {
    /// Decodes bytes that begin with their schema version. Versions newer than this code knows are
    /// read with the newest known layout, as Kafka clients do.
    public static func decode(_ bytes: ByteBuffer) throws -> Self {
        var b = bytes
        let version = try b.readKafkaInt16()
        return try Self(from: &b, version: min(max(version, 0), validVersions.upperBound))
    }

    /// Encodes with the schema version in front.
    public func encodedWithVersion(_ version: Int16) throws -> ByteBuffer {
        var w = KafkaWriter()
        w.writeInt16(version)
        try encode(to: &w, version: version)
        return w.buffer
    }
}
