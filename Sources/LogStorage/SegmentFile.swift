#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// An open file descriptor whose lifetime is managed by reference counting.
///
/// Readers (fetches) hold a reference while they read, so retention may unlink and drop a segment
/// at any time: the descriptor is closed only when the last reader lets go. Thread-safe: only
/// positional I/O (`pread`/`pwrite`) is used, never the shared file offset.
public final class SegmentFile: @unchecked Sendable {
    public let path: String
    public let fd: Int32

    public init(path: String, create: Bool, readOnly: Bool = false) throws {
        self.path = path
        var flags = readOnly ? O_RDONLY : O_RDWR
        if create { flags |= O_CREAT }
        flags |= O_CLOEXEC
        let fd = open(path, flags, 0o644)
        guard fd >= 0 else { throw LogError.io("open \(path)", errno: errno) }
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    public func size() throws -> Int64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw LogError.io("fstat \(path)", errno: errno) }
        return Int64(st.st_size)
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw LogError.io("write \(path)", errno: errno)
            }
            done += n
        }
    }

    /// Writes the iovecs contiguously at `offset`, retrying short writes.
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
                throw LogError.io("write \(path)", errno: errno)
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

    /// Reads exactly `length` bytes at `offset` (fewer only at end of file).
    public func read(at offset: Int64, length: Int, into buffer: inout ByteBuffer) throws -> Int {
        buffer.reserveCapacity(minimumWritableBytes: length)
        var done = 0
        while done < length {
            let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { p in
                pread(fd, p.baseAddress!, min(p.count, length - done), off_t(offset) + off_t(done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw LogError.io("read \(path)", errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    public func read(at offset: Int64, length: Int) throws -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: length)
        _ = try read(at: offset, length: length, into: &b)
        return b
    }

    public func sync() throws {
        #if os(Linux)
        guard fdatasync(fd) == 0 else { throw LogError.io("fdatasync \(path)", errno: errno) }
        #else
        guard fsync(fd) == 0 else { throw LogError.io("fsync \(path)", errno: errno) }
        #endif
    }

    public func truncate(to size: Int64) throws {
        guard ftruncate(fd, off_t(size)) == 0 else { throw LogError.io("truncate \(path)", errno: errno) }
    }

    /// A `FileRegion` over `[offset, offset+length)` on a duplicated descriptor that the caller must close.
    public func region(offset: Int64, length: Int) throws -> FileRegion {
        let copy = dup(fd)
        guard copy >= 0 else { throw LogError.io("dup \(path)", errno: errno) }
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: copy)
        return FileRegion(fileHandle: handle, readerIndex: Int(offset), endIndex: Int(offset) + length)
    }
}

/// fsync a directory so that file creations, renames and deletions in it are durable.
public func syncDirectory(_ path: String) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd >= 0 {
        _ = fsync(fd)
        close(fd)
    }
}
