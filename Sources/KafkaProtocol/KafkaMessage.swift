import NIOCore

/// A message body with versioned encoding. Implemented by the generated types.
public protocol KafkaMessage: Sendable, Equatable {
    static var validVersions: ClosedRange<Int16> { get }
    /// First version that uses compact strings/arrays and tagged fields, or nil if none does.
    static var firstFlexibleVersion: Int16? { get }
    init()
    init(from buffer: inout ByteBuffer, version: Int16) throws
    func encode(to writer: inout KafkaWriter, version: Int16) throws
}

extension KafkaMessage {
    public static func isFlexible(_ version: Int16) -> Bool {
        firstFlexibleVersion.map { version >= $0 } ?? false
    }

    /// Encodes into a fresh buffer; file-backed records are not allowed here.
    public func encoded(version: Int16) throws -> ByteBuffer {
        var w = KafkaWriter()
        try encode(to: &w, version: version)
        precondition(w.fileSplices.isEmpty, "encoded(version:) cannot carry file regions")
        return w.buffer
    }
}

public protocol KafkaRequestMessage: KafkaMessage {
    associatedtype Response: KafkaResponseMessage
    static var apiKey: ApiKey { get }
}

public protocol KafkaResponseMessage: KafkaMessage {
    static var apiKey: ApiKey { get }
    /// Calls `body` with every error code of the response, nested ones included (generated).
    func forEachErrorCode(_ body: (ErrorCode) -> Void)
}

extension KafkaRequestMessage {
    /// Request header version for this API version: 2 when flexible, else 1 (ApiVersions' client_id
    /// stays a classic string even in header v2, which the header type handles).
    public static func requestHeaderVersion(_ version: Int16) -> Int16 {
        isFlexible(version) ? 2 : 1
    }
}

extension KafkaResponseMessage {
    /// Response header version: 1 (with tagged fields) when flexible, except ApiVersions which is always 0.
    public static func responseHeaderVersion(_ version: Int16) -> Int16 {
        if apiKey == .apiVersions { return 0 }
        return isFlexible(version) ? 1 : 0
    }
}
