import KafkaProtocol
import KafkaWire
import NIOCore

/// What a client operation failed with, beyond a lost connection (``KafkaConnectionError``).
///
/// Retrying is decided by ``isRetriable(_:)`` from the error's type, the broker's error code and
/// the connection state, never from message text. The text says what failed, in the client's
/// terms; advice for a person at a terminal is the command line's business (`meridian`).
public enum KafkaClientError: Error, Equatable, CustomStringConvertible {
    /// The broker answered with an error code; the text says which request.
    case broker(ErrorCode, String)
    case invalidArgument(String)
    case unknownTopic(TopicName)
    /// None of the bootstrap addresses could be reached; why, per address.
    case unreachable([BootstrapFailure])
    /// The consumer has no valid position for a partition and `autoOffsetReset` is `.none`
    /// (no committed offset, or the position fell outside the log).
    case noOffsetForPartition(TopicName, Int32, String)
    /// Records were not acknowledged within `delivery.timeout.ms`; the last error seen, if any.
    case deliveryTimedOut(TopicPartition, records: Int32, lastError: String?)
    /// The producer or consumer was closed.
    case closed(String)

    /// One bootstrap address and why it could not be used.
    public struct BootstrapFailure: Sendable, Equatable, CustomStringConvertible {
        public var address: String
        public var error: KafkaConnectionError
        public init(address: String, error: KafkaConnectionError) {
            self.address = address
            self.error = error
        }
        public var description: String { "\(address): \(error)" }
    }

    /// The broker's error code, where there is one.
    public var code: ErrorCode? {
        switch self {
        case .broker(let c, _): return c
        case .unknownTopic: return .unknownTopicOrPartition
        default: return nil
        }
    }

    /// Whether the same operation may succeed if tried again (after a backoff, a metadata refresh
    /// or a new connection).
    public var isRetriable: Bool {
        switch self {
        case .broker(let code, _): return code.isRetriable
        // Unreachable is retriable unless every address failed in a way a retry repeats (TLS).
        case .unreachable(let failures): return failures.isEmpty || failures.contains { $0.error.isRetriable }
        case .invalidArgument, .unknownTopic, .noOffsetForPartition, .deliveryTimedOut, .closed: return false
        }
    }

    /// Whether any error a client operation throws may succeed if tried again: decided by type
    /// (connection errors, NIO channel and socket errors are retriable) and by error code.
    public static func isRetriable(_ error: Error) -> Bool {
        switch error {
        case let e as KafkaConnectionError: return e.isRetriable
        case let e as KafkaClientError: return e.isRetriable
        case is ChannelError, is IOError: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .broker(let code, let ctx): return "\(ctx) failed with \(code)"
        case .invalidArgument(let why): return why
        case .unknownTopic(let t): return "topic '\(t)' does not exist"
        case .noOffsetForPartition(let t, let p, let why):
            return "no position for \(t)-\(p): \(why), and the offset reset policy is none"
        case .unreachable(let why): return "no bootstrap broker could be reached (\(why.map(\.description).joined(separator: "; ")))"
        case .deliveryTimedOut(let tp, let n, let last):
            return "\(n) record(s) for \(tp) were not acknowledged within delivery.timeout.ms\(last.map { " (last error: \($0))" } ?? "")"
        case .closed(let what): return "the \(what) is closed"
        }
    }
}
