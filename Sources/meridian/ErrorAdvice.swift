import ArgumentParser
import KafkaClient
import KafkaProtocol
import KafkaWire

/// What to tell a person at a terminal when a client error ends a command: the library says what
/// failed; this adds what to do next.
enum ErrorAdvice {
    static func advice(for error: Error) -> String? {
        switch error {
        case let e as KafkaClientError:
            switch e {
            case .broker(let code, _): return advice(for: code)
            case .unknownTopic(let t): return "create it with `meridian topics create \(t)`, or check the name with `meridian topics list`"
            case .noOffsetForPartition: return "seek to an offset (-o OFFSET), or use -o beginning / -o end"
            case .unreachable(let failures):
                if failures.contains(where: { if case .tls = $0.error { return true } else { return false } }) {
                    return tlsAdvice
                }
                return "check -b/--bootstrap-server and that the broker runs (`meridian broker` or `meridian up`)"
            case .deliveryTimedOut: return "check that the partition's leader is up; raise -X delivery.timeout.ms to wait longer"
            default: return nil
            }
        case let e as KafkaConnectionError:
            if case .tls = e { return tlsAdvice }
            if case .noCommonVersion = e { return "the broker is too old or too new for this client; check its version" }
            return e.isRetriable ? "the connection was lost; try again" : nil
        default:
            return nil
        }
    }

    static let tlsAdvice = "check -X ssl.ca.location (--tls-ca), and -X ssl.certificate.location / ssl.key.location (--tls-cert/--tls-key) if the broker requires client certificates"

    static func advice(for code: ErrorCode) -> String? {
        switch code {
        case .unknownMemberID: return "the group has active members; stop them first"
        case .groupIDNotFound: return "no such group; list groups with `meridian groups list`"
        case .nonEmptyGroup: return "the group still has members; stop its consumers first"
        case .topicAlreadyExists: return "choose another name or delete the topic first"
        case .invalidReplicationFactor: return "a single-node region supports replication factor 1"
        default: return code.isRetriable ? "the error is temporary; try again" : nil
        }
    }
}

extension Meridian {
    /// Runs the command; a client error is printed with advice (exit status 1).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if let hint = ErrorAdvice.advice(for: error) {
                printError("Error: \(error)\nHint: \(hint)")
                Self.exit(withError: ExitCode.failure)
            }
            Self.exit(withError: error)
        }
    }
}
