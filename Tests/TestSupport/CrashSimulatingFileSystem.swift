import FileLayer
import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// An in-memory file system that can lose power.
///
/// It remembers what is durable the way POSIX promises it: a file's bytes after `sync()` of that
/// file; a directory entry (creation, rename, removal) after `syncDirectory` of its directory, which,
/// like a journaling file system, also makes every earlier entry change durable. At a power cut
/// (``cutPower(using:)``, or automatically after ``cutAfterOperations``) the image that survives
/// keeps the durable state plus a random prefix of what was not yet durable — of the entry changes
/// in order, and of each file's unsynced writes in order — which is what a disk that wrote some
/// of its queue before the power went can show.
///
/// After an automatic cut the file system keeps working (the code under test goes on as if nothing
/// happened), and ``image`` holds the state a restart would find.
public final class CrashSimulatingFileSystem: FileSystem, @unchecked Sendable {
    final class Inode {
        var durable: [UInt8] = []
        var current: [UInt8] = []
        var pending: [DataChange] = []

        init() {}

        init(copying bytes: [UInt8]) {
            durable = bytes
            current = bytes
        }
    }

    enum DataChange {
        case write(offset: Int, bytes: [UInt8])
        case truncate(Int)
    }

    enum EntryChange {
        case createFile(String, Inode)
        case createDirectory(String)
        case rename(String, String)
        case remove(String)
    }

    struct Namespace {
        var files: [String: Inode] = [:]
        var directories: Set<String> = []

        mutating func apply(_ change: EntryChange) {
            switch change {
            case .createFile(let path, let inode):
                files[path] = inode
            case .createDirectory(let path):
                directories.insert(path)
            case .rename(let from, let to):
                if let inode = files.removeValue(forKey: from) {
                    files[to] = inode
                } else if directories.contains(from) {
                    let prefix = from + "/"
                    for (path, inode) in files where path.hasPrefix(prefix) {
                        files.removeValue(forKey: path)
                        files[to + "/" + path.dropFirst(prefix.count)] = inode
                    }
                    for d in directories where d == from || d.hasPrefix(prefix) {
                        directories.remove(d)
                        directories.insert(to + d.dropFirst(from.count))
                    }
                }
            case .remove(let path):
                files.removeValue(forKey: path)
                directories.remove(path)
            }
        }
    }

    private let lock = NIOLock()
    private var live = Namespace()
    private var durable = Namespace()
    /// Entry changes not yet durable, oldest first, with the directory each one lives in.
    private var pendingEntries: [(change: EntryChange, directory: String)] = []
    private var operations = 0
    private var cutAt: Int?
    private var rng: SplitMix64
    private var _image: CrashSimulatingFileSystem?
    private var _failSyncs = false
    private var syncGate: (@Sendable () -> Void)?

    public init(seed: UInt64 = 1) {
        rng = SplitMix64(seed: seed)
        live.directories.insert("/")
        durable.directories.insert("/")
    }

    private init(namespace: Namespace, seed: UInt64) {
        rng = SplitMix64(seed: seed)
        live = namespace
        durable = namespace
    }

    // MARK: - Power

    /// Takes the power-cut image automatically once this many more operations have run.
    public func cutAfterOperations(_ n: Int) {
        lock.withLock { cutAt = operations + max(0, n) }
    }

    /// The image taken by an automatic cut, if it happened.
    public var image: CrashSimulatingFileSystem? { lock.withLock { _image } }

    public var operationCount: Int { lock.withLock { operations } }

    /// What a restart would find if the power went now.
    public func cutPower() -> CrashSimulatingFileSystem {
        lock.withLock { takeImageLocked() }
    }

    /// Makes every later sync fail (a disk that started returning EIO).
    public func failSyncs(_ fail: Bool) {
        lock.withLock { _failSyncs = fail }
    }

    /// Runs `gate` (outside the lock) before every file sync: a test can hold syncs back.
    public func setSyncGate(_ gate: (@Sendable () -> Void)?) {
        lock.withLock { syncGate = gate }
    }

    private func takeImageLocked() -> CrashSimulatingFileSystem {
        var ns = durable
        let keptEntries = pendingEntries.isEmpty ? 0 : Int(rng.next() % UInt64(pendingEntries.count + 1))
        for e in pendingEntries.prefix(keptEntries) { ns.apply(e.change) }
        var copies: [ObjectIdentifier: Inode] = [:]
        var files: [String: Inode] = [:]
        for (path, inode) in ns.files {
            if let c = copies[ObjectIdentifier(inode)] {
                files[path] = c
                continue
            }
            var bytes = inode.durable
            let kept = inode.pending.isEmpty ? 0 : Int(rng.next() % UInt64(inode.pending.count + 1))
            for change in inode.pending.prefix(kept) { Self.apply(change, to: &bytes) }
            let c = Inode(copying: bytes)
            copies[ObjectIdentifier(inode)] = c
            files[path] = c
        }
        ns.files = files
        return CrashSimulatingFileSystem(namespace: ns, seed: rng.next())
    }

    /// Counts an operation and takes the image when the cut point is reached. Lock held.
    private func tickLocked() {
        operations += 1
        if let cutAt, operations >= cutAt, _image == nil {
            _image = takeImageLocked()
        }
    }

    private static func apply(_ change: DataChange, to bytes: inout [UInt8]) {
        switch change {
        case .write(let offset, let data):
            if bytes.count < offset + data.count { bytes += [UInt8](repeating: 0, count: offset + data.count - bytes.count) }
            bytes.replaceSubrange(offset..<(offset + data.count), with: data)
        case .truncate(let size):
            if bytes.count > size { bytes.removeSubrange(size...) } else { bytes += [UInt8](repeating: 0, count: size - bytes.count) }
        }
    }

    private static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for p in path.split(separator: "/") where p != "." && !p.isEmpty { parts.append(p) }
        return "/" + parts.joined(separator: "/")
    }

    private func recordEntryLocked(_ change: EntryChange, in directory: String) {
        live.apply(change)
        pendingEntries.append((change, directory))
        tickLocked()
    }

    // MARK: - FileSystem

    public func openFile(_ path: String, create: Bool) throws -> any StorageFile {
        let p = Self.normalize(path)
        return try lock.withLock {
            if let inode = live.files[p] { return SimulatedFile(fs: self, inode: inode, path: p) }
            let parent = Self.parent(of: p)
            guard create else { throw FileIOError("open \(p)", errno: ENOENT) }
            guard live.directories.contains(parent) else { throw FileIOError("open \(p)", errno: ENOENT) }
            let inode = Inode()
            recordEntryLocked(.createFile(p, inode), in: parent)
            return SimulatedFile(fs: self, inode: inode, path: p)
        }
    }

    public func createDirectory(_ path: String) throws {
        let p = Self.normalize(path)
        lock.withLock {
            var missing: [String] = []
            var d = p
            while d != "/" && !live.directories.contains(d) {
                missing.append(d)
                d = Self.parent(of: d)
            }
            for m in missing.reversed() { recordEntryLocked(.createDirectory(m), in: Self.parent(of: m)) }
        }
    }

    public func contentsOfDirectory(_ path: String) throws -> [String] {
        let p = Self.normalize(path)
        return try lock.withLock {
            guard live.directories.contains(p) else { throw FileIOError("opendir \(p)", errno: ENOENT) }
            let prefix = p == "/" ? "/" : p + "/"
            var names = Set<String>()
            for f in live.files.keys where f.hasPrefix(prefix) && !f.dropFirst(prefix.count).contains("/") {
                names.insert(String(f.dropFirst(prefix.count)))
            }
            for d in live.directories where d.hasPrefix(prefix) && d != p && !d.dropFirst(prefix.count).contains("/") {
                names.insert(String(d.dropFirst(prefix.count)))
            }
            return names.sorted()
        }
    }

    public func exists(_ path: String) -> Bool {
        let p = Self.normalize(path)
        return lock.withLock { live.files[p] != nil || live.directories.contains(p) }
    }

    public func isDirectory(_ path: String) -> Bool {
        let p = Self.normalize(path)
        return lock.withLock { live.directories.contains(p) }
    }

    public func readFile(_ path: String) throws -> [UInt8]? {
        let p = Self.normalize(path)
        return lock.withLock { live.files[p]?.current }
    }

    public func rename(_ from: String, _ to: String) throws {
        let f = Self.normalize(from), t = Self.normalize(to)
        try lock.withLock {
            guard live.files[f] != nil || live.directories.contains(f) else { throw FileIOError("rename \(f)", errno: ENOENT) }
            guard live.directories.contains(Self.parent(of: t)) else { throw FileIOError("rename to \(t)", errno: ENOENT) }
            // Durable when the destination's directory is synced (and, in this model, everything before).
            recordEntryLocked(.rename(f, t), in: Self.parent(of: t))
        }
    }

    public func removeFile(_ path: String) throws {
        let p = Self.normalize(path)
        lock.withLock {
            guard live.files[p] != nil else { return }
            recordEntryLocked(.remove(p), in: Self.parent(of: p))
        }
    }

    public func removeDirectory(_ path: String) throws {
        let p = Self.normalize(path)
        lock.withLock {
            let prefix = p + "/"
            for f in live.files.keys.sorted() where f.hasPrefix(prefix) { recordEntryLocked(.remove(f), in: Self.parent(of: f)) }
            for d in live.directories.sorted(by: >) where d.hasPrefix(prefix) { recordEntryLocked(.remove(d), in: Self.parent(of: d)) }
            if live.directories.contains(p) { recordEntryLocked(.remove(p), in: Self.parent(of: p)) }
            if live.files[p] != nil { recordEntryLocked(.remove(p), in: Self.parent(of: p)) }
        }
    }

    public func syncDirectory(_ path: String) throws {
        let p = Self.normalize(path)
        try lock.withLock {
            if _failSyncs { throw FileIOError("fsync directory \(p)", errno: EIO) }
            guard let last = pendingEntries.lastIndex(where: { $0.directory == p }) else { return tickLocked() }
            for e in pendingEntries.prefix(last + 1) { durable.apply(e.change) }
            pendingEntries.removeFirst(last + 1)
            tickLocked()
        }
    }

    // MARK: - Files

    fileprivate func write(_ inode: Inode, _ bytes: [UInt8], at offset: Int) {
        lock.withLock {
            let change = DataChange.write(offset: offset, bytes: bytes)
            Self.apply(change, to: &inode.current)
            inode.pending.append(change)
            tickLocked()
        }
    }

    fileprivate func truncate(_ inode: Inode, to size: Int) {
        lock.withLock {
            let change = DataChange.truncate(size)
            Self.apply(change, to: &inode.current)
            inode.pending.append(change)
            tickLocked()
        }
    }

    fileprivate func sync(_ inode: Inode, _ path: String) throws {
        if let gate = lock.withLock({ syncGate }) { gate() }
        try lock.withLock {
            if _failSyncs { throw FileIOError("fsync \(path)", errno: EIO) }
            inode.durable = inode.current
            inode.pending.removeAll()
            tickLocked()
        }
    }

    fileprivate func read(_ inode: Inode, at offset: Int, length: Int) -> [UInt8] {
        lock.withLock {
            guard offset < inode.current.count else { return [] }
            return Array(inode.current[offset..<min(inode.current.count, offset + length)])
        }
    }

    fileprivate func size(_ inode: Inode) -> Int {
        lock.withLock { inode.current.count }
    }
}

/// An open file of a ``CrashSimulatingFileSystem``; it keeps working after its name is removed.
final class SimulatedFile: StorageFile, @unchecked Sendable {
    let fs: CrashSimulatingFileSystem
    let inode: CrashSimulatingFileSystem.Inode
    let path: String

    init(fs: CrashSimulatingFileSystem, inode: CrashSimulatingFileSystem.Inode, path: String) {
        self.fs = fs
        self.inode = inode
        self.path = path
    }

    func size() throws -> Int64 { Int64(fs.size(inode)) }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        fs.write(inode, Array(bytes), at: Int(offset))
    }

    func writev(_ vecs: inout [iovec], at offset: Int64) throws {
        var bytes: [UInt8] = []
        for v in vecs where v.iov_len > 0 {
            bytes += UnsafeRawBufferPointer(start: v.iov_base, count: v.iov_len)
        }
        fs.write(inode, bytes, at: Int(offset))
    }

    func read(at offset: Int64, length: Int, into buffer: inout ByteBuffer) throws -> Int {
        let bytes = fs.read(inode, at: Int(offset), length: length)
        buffer.writeBytes(bytes)
        return bytes.count
    }

    func sync() throws { try fs.sync(inode, path) }

    func truncate(to size: Int64) throws { fs.truncate(inode, to: Int(size)) }

    func region(offset: Int64, length: Int) throws -> FileRegion? { nil }
}

/// A small, seedable random number generator, so a failing cut point can be replayed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
