/// Waits until `condition` holds (checked every 50 ms, once more at the deadline) or `seconds`
/// pass; returns whether it held. Waiting suspends, so it never holds a thread of the test pool.
public func eventually(_ seconds: Double = 30, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while true {
        let last = ContinuousClock.now >= deadline
        if try await condition() { return true }
        if last { return false }
        try? await Task.sleep(for: .milliseconds(50))
    }
}
