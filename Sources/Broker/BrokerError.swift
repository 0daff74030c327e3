import KafkaProtocol
import FileLayer
import LogStorage

/// Failures of broker operations, each with the Kafka error code a client should see.
///
/// This file is the one place where storage and broker failures turn into wire codes.
public struct BrokerError: Error, CustomStringConvertible, Sendable {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    static func unknownTopic(_ t: TopicName) -> BrokerError {
        BrokerError(.unknownTopicOrPartition, "topic '\(t)' does not exist")
    }

    static func unknownPartition(_ t: TopicName, _ p: Int32) -> BrokerError {
        BrokerError(.unknownTopicOrPartition, "partition \(p) of topic '\(t)' does not exist")
    }

    /// The wire code for any error thrown while serving a partition.
    static func code(for error: Error) -> ErrorCode {
        switch error {
        case let e as BrokerError: return e.code
        case let e as LogError:
            switch e {
            case .offsetOutOfRange: return .offsetOutOfRange
            case .batchTooLarge: return .messageTooLarge
            case .invalidBatch: return .invalidRecord
            case .corruptBatch: return .corruptMessage
            case .invalidTimestamp: return .invalidTimestamp
            case .invalidProducerEpoch: return .invalidProducerEpoch
            case .outOfOrderSequence: return .outOfOrderSequenceNumber
            case .io, .offline: return .kafkaStorageError
            case .closed, .rollRequired: return .notLeaderOrFollower
            }
        case is FileIOError:
            return .kafkaStorageError
        case let e as KafkaProtocolError:
            if case .corruptRecordBatch = e { return .corruptMessage }
            if case .invalidTimestamp = e { return .invalidTimestamp }
            return .invalidRecord
        default:
            return .unknownServerError
        }
    }

    static func message(for error: Error) -> String {
        "\(error)"
    }
}
