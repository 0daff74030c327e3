import NIOConcurrencyHelpers

/// The broker-wide budget for bytes of requests being received or waiting to be served
/// (Kafka's `queued.max.request.bytes`, bounded by default here).
///
/// A connection reserves a request's size as soon as the frame's length prefix arrives, before its
/// body is buffered; when the budget cannot take it, the connection stops reading until a release
/// makes room. A quarter of the budget is kept for requests of at most ``smallRequestBytes``, so
/// that clients trickling huge requests can hold at most three quarters and ordinary produce and
/// fetch requests of other clients still get through. Released when the request's response is
/// written (or its connection closes).
public final class RequestMemoryPool: @unchecked Sendable {
    public let capacity: Int
    public static let smallRequestBytes = 1 << 20
    private let lock = NIOLock()
    private var used = 0
    private var waiters: [UInt64: @Sendable () -> Void] = [:]
    private var nextWaiter: UInt64 = 0

    public init(capacity: Int) {
        self.capacity = max(capacity, 4 * Self.smallRequestBytes)
    }

    /// Bytes reserved now.
    public var reserved: Int { lock.withLock { used } }

    /// Reserves `bytes` if the budget allows; large requests may not use the last quarter.
    public func tryReserve(_ bytes: Int) -> Bool {
        lock.withLock {
            let limit = bytes <= Self.smallRequestBytes ? capacity : capacity - capacity / 4
            // A single request larger than the large-request share is admitted when nothing else
            // large holds memory, so socket.request.max.bytes above it still works.
            guard used + bytes <= limit || (used == 0 && bytes <= capacity) else { return false }
            used += bytes
            return true
        }
    }

    public func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        let wake: [@Sendable () -> Void] = lock.withLock {
            used -= bytes
            let w = Array(waiters.values)
            waiters.removeAll()
            return w
        }
        for w in wake { w() }
    }

    /// Calls `callback` once, after the next release. Returns an id for ``cancelWait(_:)``.
    public func waitForRelease(_ callback: @escaping @Sendable () -> Void) -> UInt64 {
        lock.withLock {
            nextWaiter &+= 1
            waiters[nextWaiter] = callback
            return nextWaiter
        }
    }

    public func cancelWait(_ id: UInt64) {
        lock.withLock { _ = waiters.removeValue(forKey: id) }
    }
}
