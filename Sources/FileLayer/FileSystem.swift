#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// The file operations storage uses, behind one protocol so that tests can put storage on a file
/// system that loses whatever was not made durable at a simulated power cut.
///
/// Durability follows POSIX: bytes written to a file are durable after ``StorageFile/sync()``;
/// creating, renaming or removing a directory entry is durable after ``syncDirectory(_:)`` of the
/// directory holding it. Paths are plain strings; every call is thread-safe.
public protocol FileSystem: Sendable {
    /// Opens a file for reading and writing, creating it (empty) when `create` is set.
    func openFile(_ path: String, create: Bool) throws -> any StorageFile
    /// Creates a directory and its missing parents; succeeds when it exists.
    func createDirectory(_ path: String) throws
    /// Names in a directory (no `.` or `..`).
    func contentsOfDirectory(_ path: String) throws -> [String]
    func exists(_ path: String) -> Bool
    func isDirectory(_ path: String) -> Bool
    /// A whole file's bytes, or nil when there is no such file.
    func readFile(_ path: String) throws -> [UInt8]?
    /// Atomically replaces `to` (if present) with `from`.
    func rename(_ from: String, _ to: String) throws
    /// Removes a file; succeeds when it does not exist.
    func removeFile(_ path: String) throws
    /// Removes a directory and everything in it; succeeds when it does not exist.
    func removeDirectory(_ path: String) throws
    /// Makes the entries of a directory (creations, renames, removals) durable.
    func syncDirectory(_ path: String) throws
}

/// An open file. Only positional I/O is used, so one handle may serve concurrent readers; it stays
/// usable after its name is removed (a fetch may finish reading a segment retention just dropped).
public protocol StorageFile: AnyObject, Sendable {
    var path: String { get }
    func size() throws -> Int64
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws
    /// Writes the vectors contiguously at `offset`.
    func writev(_ vecs: inout [iovec], at offset: Int64) throws
    /// Reads up to `length` bytes at `offset` into `buffer` (fewer only at the end of the file).
    func read(at offset: Int64, length: Int, into buffer: inout ByteBuffer) throws -> Int
    /// Makes every byte written so far durable.
    func sync() throws
    func truncate(to size: Int64) throws
    /// A region for zero-copy sending (sendfile) on a descriptor the caller must close, or nil when
    /// the file is not an operating-system file.
    func region(offset: Int64, length: Int) throws -> FileRegion?
}

extension StorageFile {
    public func read(at offset: Int64, length: Int) throws -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: length)
        _ = try read(at: offset, length: length, into: &b)
        return b
    }
}

/// A failed file-system call, with what was attempted.
public struct FileIOError: Error, Equatable, Sendable, CustomStringConvertible {
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "\(operation): \(String(cString: strerror(errno)))" }
}

extension FileSystem {
    /// Replaces `path` with `bytes` so that a crash at any moment leaves either the old file or the
    /// new one, never a mix or nothing: write a temporary file, fsync it, rename it over `path`,
    /// fsync the directory.
    public func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let tmp = path + ".tmp"
        let f = try openFile(tmp, create: true)
        try f.truncate(to: 0)
        try bytes.withUnsafeBytes { try f.write($0, at: 0) }
        try f.sync()
        try rename(tmp, path)
        try syncDirectory(Self.parent(of: path))
    }

    public func writeAtomically(_ text: String, to path: String) throws {
        try writeAtomically(Array(text.utf8), to: path)
    }

    /// A whole file as UTF-8 text, or nil when there is no such file.
    public func readText(_ path: String) throws -> String? {
        try readFile(path).map { String(decoding: $0, as: UTF8.self) }
    }

    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
