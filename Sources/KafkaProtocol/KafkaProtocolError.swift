/// A failure to decode or encode Kafka protocol bytes.
///
/// Decoding errors mean the peer sent something that is not a valid message for the version it
/// claimed; the broker answers with a Kafka error code where the request can still be identified and
/// closes the connection otherwise.
public enum KafkaProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The buffer ended before `what` could be read.
    case truncated(String)
    /// A length or count field holds a value that cannot be right (negative, or larger than the frame).
    case invalidLength(String, Int)
    /// A varint ran past its maximum width.
    case malformedVarint
    /// A string field does not hold valid UTF-8.
    case invalidUTF8
    /// A nil value was given for a field that is not nullable in the version being encoded.
    case nullNotAllowed(String)
    /// The API key/version pair is not one this code can handle.
    case unsupportedVersion(apiKey: Int16, version: Int16)
    /// A record batch failed validation.
    case invalidRecordBatch(String)
    /// A record batch's CRC-32C did not match its contents.
    case corruptRecordBatch(expected: UInt32, actual: UInt32)
    /// A compressed payload could not be inflated or deflated.
    case compression(String)
    /// A record timestamp is outside what the topic accepts (`message.timestamp.*.max.ms`).
    case invalidTimestamp(String)

    public var description: String {
        switch self {
        case .truncated(let what): return "truncated message: ran out of bytes reading \(what)"
        case .invalidLength(let what, let n): return "invalid length \(n) for \(what)"
        case .malformedVarint: return "malformed varint (more than 5/10 bytes)"
        case .invalidUTF8: return "string is not valid UTF-8"
        case .nullNotAllowed(let what): return "null is not allowed for \(what) in this version"
        case .unsupportedVersion(let k, let v): return "unsupported version \(v) of API \(ApiKey(rawValue: k).name)"
        case .invalidRecordBatch(let why): return "invalid record batch: \(why)"
        case .corruptRecordBatch(let e, let a):
            return "corrupt record batch: CRC-32C is \(String(a, radix: 16)), header says \(String(e, radix: 16))"
        case .compression(let why): return "compression error: \(why)"
        case .invalidTimestamp(let why): return "invalid timestamp: \(why)"
        }
    }
}
