import FileLayer
import NIOCore

/// Sparse map from offset to file position for one segment (`.index` file).
///
/// Each entry is 8 bytes on disk: offset relative to the segment base (u32) and byte position (u32),
/// big-endian, in increasing order. Entries are kept in memory too; lookups are binary searches.
struct OffsetIndex {
    struct Entry: Equatable {
        var relativeOffset: UInt32
        var position: UInt32
    }

    static let entrySize = 8
    let file: any StorageFile
    private(set) var entries: [Entry] = []

    init(file: any StorageFile) {
        self.file = file
    }

    /// Loads the file; returns false (and leaves the index empty) if it is damaged or disagrees with
    /// a log of `logSize` bytes, in which case the caller rebuilds it.
    mutating func load(logSize: Int64) throws -> Bool {
        let size = try file.size()
        entries = []
        guard size % Int64(Self.entrySize) == 0 else { return false }
        var b = try file.read(at: 0, length: Int(size))
        var last: Entry? = nil
        while let rel = b.readInteger(endianness: .big, as: UInt32.self),
              let pos = b.readInteger(endianness: .big, as: UInt32.self)
        {
            let e = Entry(relativeOffset: rel, position: pos)
            if let l = last, e.relativeOffset <= l.relativeOffset || e.position <= l.position { entries = []; return false }
            if Int64(pos) >= logSize { entries = []; return false }
            entries.append(e)
            last = e
        }
        return true
    }

    mutating func append(relativeOffset: UInt32, position: UInt32) throws {
        if let l = entries.last, relativeOffset <= l.relativeOffset { return }
        var bytes = (relativeOffset.bigEndian, position.bigEndian)
        try withUnsafeBytes(of: &bytes) { try file.write($0, at: Int64(entries.count * Self.entrySize)) }
        entries.append(Entry(relativeOffset: relativeOffset, position: position))
    }

    /// Largest entry whose offset is <= `relativeOffset`, or nil if none.
    func floor(_ relativeOffset: UInt32) -> Entry? {
        entries.lastElement { $0.relativeOffset <= relativeOffset }
    }

    /// Drops entries at or after `position` and rewrites the file length.
    mutating func truncate(atOrAfterPosition position: UInt32) throws {
        entries.removeAll { $0.position >= position }
        try file.truncate(to: Int64(entries.count * Self.entrySize))
    }

    mutating func reset() throws {
        entries = []
        try file.truncate(to: 0)
    }
}

/// Sparse map from timestamp to offset for one segment (`.timeindex` file).
///
/// Each 12-byte entry holds the largest timestamp seen so far (i64) and the relative offset of the
/// record carrying it (u32); timestamps increase strictly from entry to entry.
struct TimeIndex {
    struct Entry: Equatable {
        var timestamp: Int64
        var relativeOffset: UInt32
    }

    static let entrySize = 12
    let file: any StorageFile
    private(set) var entries: [Entry] = []

    init(file: any StorageFile) {
        self.file = file
    }

    mutating func load(maxRelativeOffset: UInt32?) throws -> Bool {
        let size = try file.size()
        entries = []
        guard size % Int64(Self.entrySize) == 0 else { return false }
        var b = try file.read(at: 0, length: Int(size))
        while let ts = b.readInteger(endianness: .big, as: Int64.self),
              let rel = b.readInteger(endianness: .big, as: UInt32.self)
        {
            let e = Entry(timestamp: ts, relativeOffset: rel)
            if let l = entries.last, e.timestamp <= l.timestamp || e.relativeOffset < l.relativeOffset { entries = []; return false }
            if let m = maxRelativeOffset, rel > m { entries = []; return false }
            entries.append(e)
        }
        return true
    }

    mutating func append(timestamp: Int64, relativeOffset: UInt32) throws {
        if let l = entries.last, timestamp <= l.timestamp { return }
        var bytes = (UInt64(bitPattern: timestamp).bigEndian, relativeOffset.bigEndian)
        // The tuple has 4 bytes of padding at the end; write only the 12 meaningful bytes.
        try withUnsafeBytes(of: &bytes) {
            try file.write(UnsafeRawBufferPointer(rebasing: $0[0..<Self.entrySize]), at: Int64(entries.count * Self.entrySize))
        }
        entries.append(Entry(timestamp: timestamp, relativeOffset: relativeOffset))
    }

    /// Last entry whose timestamp is below `timestamp`: every record up to its offset is older.
    func lastBefore(_ timestamp: Int64) -> Entry? {
        entries.lastElement { $0.timestamp < timestamp }
    }

    mutating func truncate(atOrAfterRelativeOffset rel: UInt32) throws {
        entries.removeAll { $0.relativeOffset >= rel }
        try file.truncate(to: Int64(entries.count * Self.entrySize))
    }

    mutating func reset() throws {
        entries = []
        try file.truncate(to: 0)
    }
}

extension RandomAccessCollection where Index == Int {
    /// Index of the last element for which `isBelow` holds, by binary search; the collection must be
    /// ordered so that `isBelow` is true for a prefix and false after it.
    func lastIndex(below isBelow: (Element) -> Bool) -> Int? {
        var lo = startIndex, hi = endIndex - 1, found: Int? = nil
        while lo <= hi {
            let mid = (lo + hi) / 2
            if isBelow(self[mid]) {
                found = mid
                lo = mid + 1
            } else {
                hi = mid - 1
            }
        }
        return found
    }

    func lastElement(where isBelow: (Element) -> Bool) -> Element? {
        lastIndex(below: isBelow).map { self[$0] }
    }
}
