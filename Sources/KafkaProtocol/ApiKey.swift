/// A Kafka API key. The named keys are generated (`ApiKey+Generated.swift`); unknown keys are
/// still representable so a request for one can be answered with an error.
public struct ApiKey: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }
    public var description: String { "\(name)(\(rawValue))" }
}
