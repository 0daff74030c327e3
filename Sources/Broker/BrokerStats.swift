import Atomics
import KafkaProtocol
import NIOConcurrencyHelpers

/// Counters about the broker's own work, readable from any thread. Every request adds to them with
/// atomic increments only; an error code takes a lock, and only when it is not `none`.
public final class BrokerStats: Sendable {
    /// How many times a fetch looked at its partitions (once per request, plus once per wake-up
    /// while long-polling). A waiting fetch that is not woken adds nothing: no polling loop.
    public let fetchEvaluations = ManagedAtomic<Int>(0)
    public let produceRequests = ManagedAtomic<Int>(0)

    /// Requests received, by API key (keys 0..<`apiSlots`).
    static let apiSlots = 128
    private let requests: [ManagedAtomic<Int>] = (0..<BrokerStats.apiSlots).map { _ in ManagedAtomic(0) }
    /// Bytes of request frames read and response frames written (size prefixes included).
    public let bytesIn = ManagedAtomic<Int>(0)
    public let bytesOut = ManagedAtomic<Int>(0)
    /// Client connections open now, and accepted since start.
    public let connectionsOpen = ManagedAtomic<Int>(0)
    public let connectionsAccepted = ManagedAtomic<Int>(0)
    private let errorCounts = NIOLockedValueBox<[ErrorKey: Int]>([:])

    public struct ErrorKey: Hashable, Sendable {
        public var api: ApiKey
        public var code: ErrorCode
    }

    public init() {}

    /// A request frame of `bytes` bytes (size prefix included) for `api` arrived.
    @inline(__always)
    func request(_ api: ApiKey, bytes: Int) {
        let k = Int(api.rawValue)
        if k >= 0 && k < Self.apiSlots { requests[k].wrappingIncrement(ordering: .relaxed) }
        bytesIn.wrappingIncrement(by: bytes, ordering: .relaxed)
    }

    /// A response of `bytes` bytes went out; its error codes are counted.
    func response(_ body: any KafkaResponseMessage, bytes: Int) {
        bytesOut.wrappingIncrement(by: bytes, ordering: .relaxed)
        var found: [ErrorCode: Int] = [:]
        body.forEachErrorCode { code in
            if code != .none { found[code, default: 0] += 1 }
        }
        guard !found.isEmpty else { return }
        let api = type(of: body).apiKey
        errorCounts.withLockedValue { counts in
            for (code, n) in found { counts[ErrorKey(api: api, code: code), default: 0] += n }
        }
    }

    /// Requests received so far, by API (only APIs with at least one).
    public var requestsByAPI: [ApiKey: Int] {
        var out: [ApiKey: Int] = [:]
        for (k, c) in requests.enumerated() {
            let n = c.load(ordering: .relaxed)
            if n > 0 { out[ApiKey(rawValue: Int16(k))] = n }
        }
        return out
    }

    /// Error codes answered so far (partition-level ones included), by API and code.
    public var errors: [ErrorKey: Int] { errorCounts.withLockedValue { $0 } }
}
