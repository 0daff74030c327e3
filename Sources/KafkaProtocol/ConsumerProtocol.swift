import NIOCore

// The consumer protocol's subscription and assignment travel inside JoinGroup/SyncGroup as bytes
// that start with their own int16 schema version, followed by the versioned struct.

extension ConsumerProtocolSubscription {
    /// Decodes bytes from a JoinGroup member's metadata (version prefix included). Newer versions
    /// than this code knows are read with the newest known layout, as Kafka clients do.
    public static func decode(_ bytes: ByteBuffer) throws -> ConsumerProtocolSubscription {
        var b = bytes
        let version = try b.readKafkaInt16()
        return try ConsumerProtocolSubscription(from: &b, version: min(max(version, 0), validVersions.upperBound))
    }

    public func encodedWithVersion(_ version: Int16) throws -> ByteBuffer {
        var w = KafkaWriter()
        w.writeInt16(version)
        try encode(to: &w, version: version)
        return w.buffer
    }
}

extension ConsumerProtocolAssignment {
    public static func decode(_ bytes: ByteBuffer) throws -> ConsumerProtocolAssignment {
        var b = bytes
        let version = try b.readKafkaInt16()
        return try ConsumerProtocolAssignment(from: &b, version: min(max(version, 0), validVersions.upperBound))
    }

    public func encodedWithVersion(_ version: Int16) throws -> ByteBuffer {
        var w = KafkaWriter()
        w.writeInt16(version)
        try encode(to: &w, version: version)
        return w.buffer
    }
}
