#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// The real file system.
public struct PosixFileSystem: FileSystem {
    public init() {}

    public func openFile(_ path: String, create: Bool) throws -> any StorageFile {
        try PosixFile(path: path, create: create)
    }

    public func createDirectory(_ path: String) throws {
        if isDirectory(path) { return }
        let parent = Self.parent(of: path)
        if parent != path && parent != "." && parent != "/" && !exists(parent) { try createDirectory(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw FileIOError("mkdir \(path)", errno: errno) }
    }

    public func contentsOfDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw FileIOError("opendir \(path)", errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    public func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public func readFile(_ path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw FileIOError("open \(path)", errno: errno)
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIOError("read \(path)", errno: errno)
            }
            if n == 0 { return out }
            out += chunk[0..<n]
        }
    }

    public func rename(_ from: String, _ to: String) throws {
        guard posixRename(from, to) == 0 else { throw FileIOError("rename \(from) to \(to)", errno: errno) }
    }

    public func removeFile(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT { throw FileIOError("unlink \(path)", errno: errno) }
    }

    public func removeDirectory(_ path: String) throws {
        guard isDirectory(path) else { return try removeFile(path) }
        for name in try contentsOfDirectory(path) {
            let child = "\(path)/\(name)"
            if isDirectory(child) { try removeDirectory(child) } else { try removeFile(child) }
        }
        if rmdir(path) != 0 && errno != ENOENT { throw FileIOError("rmdir \(path)", errno: errno) }
    }

    public func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileIOError("open directory \(path)", errno: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw FileIOError("fsync directory \(path)", errno: errno) }
    }
}

/// An open operating-system file descriptor, closed when the last reference goes away.
public final class PosixFile: StorageFile {
    public let path: String
    public let fd: Int32

    public init(path: String, create: Bool) throws {
        self.path = path
        let fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0o644)
        guard fd >= 0 else { throw FileIOError("open \(path)", errno: errno) }
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    public func size() throws -> Int64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileIOError("fstat \(path)", errno: errno) }
        return Int64(st.st_size)
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIOError("write \(path)", errno: errno)
            }
            done += n
        }
    }

    public func writev(_ vecs: inout [iovec], at offset: Int64) throws {
        var total = 0
        for v in vecs { total += v.iov_len }
        var written = 0
        var first = 0
        while written < total {
            let count = min(vecs.count - first, 1024)
            let n = vecs.withUnsafeMutableBufferPointer { p in
                pwritev(fd, p.baseAddress! + first, Int32(count), off_t(offset) + off_t(written))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIOError("write \(path)", errno: errno)
            }
            written += n
            // Skip the fully written vectors and trim a partly written one.
            var remaining = n
            while first < vecs.count && remaining >= vecs[first].iov_len {
                remaining -= vecs[first].iov_len
                first += 1
            }
            if remaining > 0 {
                vecs[first].iov_base = vecs[first].iov_base.map { $0 + remaining }
                vecs[first].iov_len -= remaining
            }
        }
    }

    public func read(at offset: Int64, length: Int, into buffer: inout ByteBuffer) throws -> Int {
        buffer.reserveCapacity(minimumWritableBytes: length)
        var done = 0
        while done < length {
            let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { p in
                pread(fd, p.baseAddress!, min(p.count, length - done), off_t(offset) + off_t(done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIOError("read \(path)", errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    public func sync() throws {
        #if os(Linux)
        guard fdatasync(fd) == 0 else { throw FileIOError("fdatasync \(path)", errno: errno) }
        #else
        guard fsync(fd) == 0 else { throw FileIOError("fsync \(path)", errno: errno) }
        #endif
    }

    public func truncate(to size: Int64) throws {
        guard ftruncate(fd, off_t(size)) == 0 else { throw FileIOError("truncate \(path)", errno: errno) }
    }

    public func region(offset: Int64, length: Int) throws -> FileRegion? {
        let copy = dup(fd)
        guard copy >= 0 else { throw FileIOError("dup \(path)", errno: errno) }
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: copy)
        return FileRegion(fileHandle: handle, readerIndex: Int(offset), endIndex: Int(offset) + length)
    }
}

/// `rename(2)`, reachable from inside a type with a `rename` method of its own.
private func posixRename(_ from: String, _ to: String) -> Int32 {
    rename(from, to)
}
