import NIOCore

/// The header in front of every request.
///
/// v1: api key, version, correlation id, nullable client id. v2 adds a tagged-field section.
/// The client id is a classic int16-length string in every version (never compact).
public struct RequestHeader: Sendable, Equatable {
    public var apiKey: ApiKey
    public var apiVersion: Int16
    public var correlationID: Int32
    public var clientID: String?
    public var taggedFields: [TaggedField] = []

    public init(apiKey: ApiKey, apiVersion: Int16, correlationID: Int32, clientID: String?) {
        self.apiKey = apiKey
        self.apiVersion = apiVersion
        self.correlationID = correlationID
        self.clientID = clientID
    }

    /// Decodes a header whose version is chosen by the caller once the api key and version are known.
    /// `headerVersion` is called with the api key and version read from the first four bytes.
    public init(from buffer: inout ByteBuffer, headerVersion: (ApiKey, Int16) -> Int16) throws {
        let key = ApiKey(rawValue: try buffer.readKafkaInt16())
        let version = try buffer.readKafkaInt16()
        let correlation = try buffer.readKafkaInt32()
        self.init(apiKey: key, apiVersion: version, correlationID: correlation, clientID: nil)
        let hv = headerVersion(key, version)
        if hv >= 1 {
            clientID = try buffer.readKafkaNullableString(flexible: false)
        }
        if hv >= 2 {
            taggedFields = try buffer.readTaggedFields()
        }
    }

    public func encode(to w: inout KafkaWriter, headerVersion: Int16) {
        w.writeInt16(apiKey.rawValue)
        w.writeInt16(apiVersion)
        w.writeInt32(correlationID)
        if headerVersion >= 1 {
            try! w.writeNullableString(clientID, flexible: false, nullable: true)
        }
        if headerVersion >= 2 {
            w.writeTaggedFields([], unknown: taggedFields)
        }
    }
}

/// The header in front of every response: the correlation id, plus tagged fields in v1.
public struct ResponseHeader: Sendable, Equatable {
    public var correlationID: Int32
    public var taggedFields: [TaggedField] = []

    public init(correlationID: Int32) {
        self.correlationID = correlationID
    }

    public init(from buffer: inout ByteBuffer, headerVersion: Int16) throws {
        self.correlationID = try buffer.readKafkaInt32()
        if headerVersion >= 1 {
            taggedFields = try buffer.readTaggedFields()
        }
    }

    public func encode(to w: inout KafkaWriter, headerVersion: Int16) {
        w.writeInt32(correlationID)
        if headerVersion >= 1 {
            w.writeTaggedFields([], unknown: taggedFields)
        }
    }
}
