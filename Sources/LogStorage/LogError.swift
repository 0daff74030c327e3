/// Failures of the partition log. The broker maps each to a Kafka error code in one place.
public enum LogError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The requested offset is outside [logStartOffset, logEndOffset].
    case offsetOutOfRange(requested: Int64, logStart: Int64, logEnd: Int64)
    /// A batch is larger than `max.message.bytes`.
    case batchTooLarge(size: Int, limit: Int64)
    /// A batch failed structural or CRC validation.
    case invalidBatch(String)
    case corruptBatch(String)
    /// A record timestamp is outside the window the topic accepts.
    case invalidTimestamp(String)
    /// Idempotent producer checks.
    case invalidProducerEpoch(producerID: Int64, epoch: Int16, current: Int16)
    case outOfOrderSequence(producerID: Int64, expected: Int32, got: Int32)
    /// An operating-system call failed.
    case io(String, errno: Int32)
    /// The log was closed or deleted while the call was in progress.
    case closed
    /// The active segment must be rolled before this append; the caller repeats it off the event
    /// loop, where creating files is allowed.
    case rollRequired
    /// A write or fsync failed earlier: the log takes no more writes until the broker restarts.
    case offline(String)

    public var description: String {
        switch self {
        case .offsetOutOfRange(let r, let s, let e): return "offset \(r) is outside the log [\(s), \(e)]"
        case .batchTooLarge(let size, let limit): return "record batch of \(size) bytes exceeds max.message.bytes=\(limit)"
        case .invalidBatch(let why): return "invalid record batch: \(why)"
        case .corruptBatch(let why): return "corrupt record batch: \(why)"
        case .invalidTimestamp(let why): return why
        case .invalidProducerEpoch(let p, let e, let c): return "producer \(p) epoch \(e) is older than current epoch \(c)"
        case .outOfOrderSequence(let p, let exp, let got): return "producer \(p): expected sequence \(exp), got \(got)"
        case .io(let what, let e): return "\(what): \(String(cString: strerror(e)))"
        case .closed: return "log is closed"
        case .rollRequired: return "the active segment must be rolled first"
        case .offline(let why): return "the partition is offline after a storage failure (\(why)); restart the broker once the disk is healthy"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
