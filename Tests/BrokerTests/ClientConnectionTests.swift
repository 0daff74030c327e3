import Broker
import Foundation
import KafkaProtocol
import KafkaWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// The client connection under connection loss: every request is answered or failed, never left waiting.
@Suite("Client connection", .timeLimit(.minutes(2)))
struct ClientConnectionTests {
    @Test func requestWrittenAfterTheConnectionClosedFailsInsteadOfHanging() async throws {
        let b = try await InProcessBroker()
        let conn = try await b.connect()
        try await conn.channel.close()
        // Let the pipeline's handler removal (scheduled by the close) run, so the next write meets a
        // torn-down pipeline, as a producer's write does when a link is cut between its liveness
        // check and its write.
        for _ in 0..<3 { try await conn.channel.eventLoop.submit {}.get() }
        let outcome = try await firstOf(seconds: 5) {
            do {
                _ = try await conn.send(MetadataRequest(topics: []))
                return "answered"
            } catch {
                return "failed: \(error)"
            }
        }
        #expect(outcome?.hasPrefix("failed") == true, "the request must fail promptly, got \(outcome ?? "no outcome within 5 s")")
        await b.stop()
    }
}

/// Runs `body` and returns its result, or nil when it has not finished after `seconds`. A body that
/// never finishes (an awaited future nobody completes ignores cancellation) is left behind rather
/// than awaited, so the test reports the hang instead of becoming it.
func firstOf<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T? {
    let gate = NIOLockedValueBox<CheckedContinuation<T?, Error>?>(nil)
    return try await withCheckedThrowingContinuation { (c: CheckedContinuation<T?, Error>) in
        gate.withLockedValue { $0 = c }
        @Sendable func finish(_ r: Result<T?, Error>) {
            gate.withLockedValue { c in
                c?.resume(with: r)
                c = nil
            }
        }
        Task { finish(await Result(catching: { try await body() })) }
        Task {
            try? await Task.sleep(for: .seconds(seconds))
            finish(.success(nil))
        }
    }
}

extension Result where Failure == Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
