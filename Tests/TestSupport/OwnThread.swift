import Foundation

/// Runs `body` on a thread of its own and returns its result to the caller, suspended meanwhile.
/// For long blocking or CPU-bound test work: the test pool has as many threads as the machine has
/// cores (two here), and work that holds one of them for seconds delays every test beside it.
/// `body` runs outside the test's task, so it reports problems as its result rather than with
/// `#expect`.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, Error>) in
        let thread = Thread { c.resume(with: Result { try body() }) }
        thread.stackSize = 8 << 20
        thread.start()
    }
}
