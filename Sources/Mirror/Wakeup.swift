import NIOConcurrencyHelpers

/// Wakes one waiting task. A `signal()` while nobody waits is kept, so the next `wait()` returns
/// at once; several signals before a wait count as one.
final class Wakeup: @unchecked Sendable {
    private let lock = NIOLock()
    private var signalled = false
    private var waiter: CheckedContinuation<Void, Never>?

    init() {}

    func signal() {
        let w: CheckedContinuation<Void, Never>? = lock.withLock {
            if let w = waiter {
                waiter = nil
                return w
            }
            signalled = true
            return nil
        }
        w?.resume()
    }

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now: Bool = lock.withLock {
                if signalled {
                    signalled = false
                    return true
                }
                waiter = c
                return false
            }
            if now { c.resume() }
        }
    }
}
