/// Which leader epoch wrote which offsets of a partition: the start offset of every epoch, in
/// increasing order of both (Kafka's `leader-epoch-checkpoint`).
///
/// A client that read a record stamped with epoch E asks (OffsetForLeaderEpoch) where E ended on the
/// leader; if the leader's answer is below the client's position, the log it read from diverged.
/// Owned by ``PartitionLog`` and changed only under its lock; persisted as text
/// (`0`, count, then `epoch startOffset` per line) by write-temp, fsync, rename.
public struct LeaderEpochCache: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var epoch: Int32
        public var startOffset: Int64
    }

    public private(set) var entries: [Entry] = []

    public init(entries: [Entry] = []) {
        self.entries = entries
    }

    public var latestEpoch: Int32? { entries.last?.epoch }

    /// Records that `epoch` starts at `startOffset`. Entries at or above it that a newer epoch
    /// supersedes are dropped; an older or equal epoch changes nothing. Returns whether it changed.
    @discardableResult
    public mutating func assign(epoch: Int32, startOffset: Int64) -> Bool {
        guard epoch >= 0 else { return false }
        if let last = entries.last, epoch <= last.epoch { return false }
        entries.removeAll { $0.startOffset >= startOffset }
        entries.append(Entry(epoch: epoch, startOffset: startOffset))
        return true
    }

    /// The epoch of the record at `offset`, if known.
    public func epoch(at offset: Int64) -> Int32? {
        entries.last { $0.startOffset <= offset }?.epoch
    }

    /// Where `requested` ended: (the largest epoch <= requested, the start offset of the first epoch
    /// above it, or `logEndOffset` when `requested` is the latest). (-1, -1) when the requested epoch
    /// is newer than every known one, as Kafka answers.
    public func endOffset(for requested: Int32, logEndOffset: Int64) -> (epoch: Int32, endOffset: Int64) {
        guard requested >= 0, let latest = entries.last else { return (-1, -1) }
        if requested == latest.epoch { return (requested, logEndOffset) }
        guard let higher = entries.first(where: { $0.epoch > requested }) else { return (-1, -1) }
        guard let floor = entries.last(where: { $0.epoch <= requested }) else { return (requested, higher.startOffset) }
        return (floor.epoch, higher.startOffset)
    }

    /// Forgets epochs that start at or after `offset` (the log was cut there).
    public mutating func truncate(fromEnd offset: Int64) {
        entries.removeAll { $0.startOffset >= offset }
    }

    /// Forgets epochs wholly below `offset` (retention or DeleteRecords moved the log start) and
    /// moves the start of the one containing it up to it.
    public mutating func truncate(fromStart offset: Int64) {
        guard let i = entries.lastIndex(where: { $0.startOffset <= offset }) else { return }
        entries.removeFirst(i)
        entries[0].startOffset = offset
    }

    public var text: String {
        "0\n\(entries.count)\n" + entries.map { "\($0.epoch) \($0.startOffset)\n" }.joined()
    }

    /// Parses the checkpoint text; nil when it is damaged (the caller starts from an empty cache,
    /// which only makes OffsetForLeaderEpoch less precise, never wrong about the current epoch).
    public init?(text: String) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard lines.count >= 2, lines[0] == "0", let count = Int(lines[1]), count == lines.count - 2 else { return nil }
        var out: [Entry] = []
        for line in lines.dropFirst(2) {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let e = Int32(parts[0]), let o = Int64(parts[1]), e >= 0, o >= 0 else { return nil }
            if let last = out.last, e <= last.epoch || o < last.startOffset { return nil }
            out.append(Entry(epoch: e, startOffset: o))
        }
        entries = out
    }
}
