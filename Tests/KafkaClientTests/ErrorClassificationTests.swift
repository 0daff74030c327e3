import KafkaProtocol
import KafkaWire
import NIOCore
import Testing
@testable import KafkaClient

/// Retries are decided by error type, error code and connection state — never by message text.
@Suite("Client error classification", .timeLimit(.minutes(1)))
struct ErrorClassificationTests {
    struct Opaque: Error, CustomStringConvertible {
        // Text that a text-matching classifier would have taken for a lost connection.
        var description: String { "Connection reset by peer (connection lost)" }
    }

    @Test func retriableByTypeAndCodeNotByText() {
        #expect(KafkaClientError.isRetriable(KafkaClientError.broker(.notLeaderOrFollower, "producing")))
        #expect(KafkaClientError.isRetriable(KafkaClientError.broker(.coordinatorNotAvailable, "FindCoordinator")))
        #expect(!KafkaClientError.isRetriable(KafkaClientError.broker(.topicAuthorizationFailed, "producing")))
        #expect(!KafkaClientError.isRetriable(KafkaClientError.unknownTopic("t")))
        #expect(!KafkaClientError.isRetriable(KafkaClientError.deliveryTimedOut(TopicPartition("t", 0), records: 1, lastError: nil)))
        #expect(KafkaClientError.isRetriable(KafkaConnectionError.connectionClosed))
        #expect(KafkaClientError.isRetriable(KafkaConnectionError.timedOut(correlationID: 7)))
        #expect(KafkaClientError.isRetriable(KafkaConnectionError.connectFailed(host: "h", port: 1, reason: "refused")))
        #expect(!KafkaClientError.isRetriable(KafkaConnectionError.tls("certificate verify failed")))
        #expect(!KafkaClientError.isRetriable(KafkaConnectionError.noCommonVersion(.fetch)))
        #expect(KafkaClientError.isRetriable(ChannelError.ioOnClosedChannel))
        #expect(KafkaClientError.isRetriable(IOError(errnoCode: 104, reason: "read")))
        #expect(!KafkaClientError.isRetriable(Opaque()), "an unknown error is not retried, whatever its text says")
    }

    @Test func anUnreachableBootstrapIsRetriedUnlessEveryAddressFailedTLS() {
        let refused = KafkaClientError.BootstrapFailure(address: "a:9092", error: .connectFailed(host: "a", port: 9092, reason: "refused"))
        let tls = KafkaClientError.BootstrapFailure(address: "b:9093", error: .tls("unknown CA"))
        #expect(KafkaClientError.unreachable([refused]).isRetriable)
        #expect(KafkaClientError.unreachable([refused, tls]).isRetriable)
        #expect(!KafkaClientError.unreachable([tls]).isRetriable, "a wrong CA fails the same way every time")
    }

    @Test func errorTextsSayWhatFailedWithoutCommandLineAdvice() {
        let texts = [
            KafkaClientError.unknownTopic("orders").description,
            KafkaClientError.unreachable([.init(address: "a:1", error: .connectFailed(host: "a", port: 1, reason: "refused"))]).description,
            KafkaConnectionError.tls("unknown CA").description,
        ]
        for t in texts { #expect(!t.contains("--") && !t.contains("meridian "), "advice belongs to the CLI: \(t)") }
    }
}
