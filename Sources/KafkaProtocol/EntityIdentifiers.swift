// Strong types for the schema's `entityType`s, so a topic name cannot be passed where a group id
// is expected. Each wraps the wire value unchanged.

/// A topic name. Valid names are 1–249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
public struct TopicName: RawRepresentable, Hashable, Comparable, Sendable, ExpressibleByStringLiteral,
    CustomStringConvertible
{
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ value: String) { self.rawValue = value }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }
    public static func < (a: TopicName, b: TopicName) -> Bool { a.rawValue < b.rawValue }

    /// Kafka's limit on topic name length.
    public static let maxLength = 249

    /// Why this name is not a legal topic name, or nil when it is.
    public var validationError: String? {
        if rawValue.isEmpty { return "topic name is empty" }
        if rawValue == "." || rawValue == ".." { return "topic name cannot be '.' or '..'" }
        if rawValue.utf8.count > TopicName.maxLength {
            return "topic name is \(rawValue.utf8.count) characters; the limit is \(TopicName.maxLength)"
        }
        for b in rawValue.utf8 {
            let ok = (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39)
                || b == 0x2E || b == 0x5F || b == 0x2D
            if !ok { return "topic name '\(rawValue)' contains a character outside [a-zA-Z0-9._-]" }
        }
        return nil
    }
}

/// A consumer group id.
public struct GroupID: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ value: String) { self.rawValue = value }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }
}

/// A broker (node) id; -1 means none.
public struct BrokerID: RawRepresentable, Hashable, Comparable, Sendable, ExpressibleByIntegerLiteral,
    CustomStringConvertible
{
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public init(_ value: Int32) { self.rawValue = value }
    public init(integerLiteral value: Int32) { self.rawValue = value }
    public var description: String { String(rawValue) }
    public static let none = BrokerID(-1)
    public static func < (a: BrokerID, b: BrokerID) -> Bool { a.rawValue < b.rawValue }
}

/// An idempotent/transactional producer id; -1 means a producer without idempotence.
public struct ProducerID: RawRepresentable, Hashable, Sendable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    public var rawValue: Int64
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public init(_ value: Int64) { self.rawValue = value }
    public init(integerLiteral value: Int64) { self.rawValue = value }
    public var description: String { String(rawValue) }
    public static let none = ProducerID(-1)
}
