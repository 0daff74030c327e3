import ClusterMetadata
import NIOConcurrencyHelpers

/// Hands out producer ids for InitProducerId, reserving them from the metadata store in blocks so
/// an id is never reused after a restart, and remembers the epoch it last granted each id.
///
/// A client that presents a producer id and epoch asks for an epoch bump (KIP-360). It gets one only
/// when both match what was last granted, so no client can fence another producer by naming its
/// id; anything else gets a fresh id (what Kafka does for producers without a transactional id).
/// The memory of grants is bounded: the oldest are forgotten first, and a forgotten id simply gets
/// a fresh id on its next request.
public final class ProducerIDManager: @unchecked Sendable {
    private let store: MetadataStore
    private let lock = NIOLock()
    private var next: Int64 = 0
    private var end: Int64 = 0
    private var granted: [Int64: Int16] = [:]
    private var grantOrder: [Int64] = []
    private let maxTracked: Int
    public static let blockSize: Int64 = 1000

    public init(store: MetadataStore, maxTracked: Int = 100_000) {
        self.store = store
        self.maxTracked = max(1, maxTracked)
    }

    public func nextID() throws -> Int64 {
        try lock.withLock { try freshLocked() }
    }

    private func freshLocked() throws -> Int64 {
        if next >= end {
            next = try store.allocateProducerIDs(count: Self.blockSize)
            end = next + Self.blockSize
        }
        defer { next += 1 }
        return next
    }

    /// The id and epoch for an InitProducerId that named `producerID`/`epoch` (-1 for none).
    public func initProducer(producerID: Int64, epoch: Int16) throws -> (id: Int64, epoch: Int16) {
        try lock.withLock {
            if producerID >= 0, epoch >= 0, epoch < Int16.max - 1, granted[producerID] == epoch {
                granted[producerID] = epoch + 1
                return (producerID, epoch + 1)
            }
            let id = try freshLocked()
            granted[id] = 0
            grantOrder.append(id)
            if grantOrder.count > maxTracked {
                let drop = grantOrder.count - maxTracked
                for old in grantOrder.prefix(drop) { granted[old] = nil }
                grantOrder.removeFirst(drop)
            }
            return (id, 0)
        }
    }
}
