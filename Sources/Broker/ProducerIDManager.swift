import ClusterMetadata
import NIOConcurrencyHelpers

/// Hands out producer ids for InitProducerId, reserving them from the metadata store in blocks so
/// an id is never reused after a restart.
public final class ProducerIDManager: @unchecked Sendable {
    private let store: MetadataStore
    private let lock = NIOLock()
    private var next: Int64 = 0
    private var end: Int64 = 0
    public static let blockSize: Int64 = 1000

    public init(store: MetadataStore) {
        self.store = store
    }

    public func nextID() throws -> Int64 {
        try lock.withLock {
            if next >= end {
                next = try store.allocateProducerIDs(count: Self.blockSize)
                end = next + Self.blockSize
            }
            defer { next += 1 }
            return next
        }
    }
}
