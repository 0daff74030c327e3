import Foundation

/// Reads process facts from /proc (Linux).
enum ProcessStats {
    /// Pid of the process listening on TCP `port` on this machine, found through /proc/net/tcp{,6}
    /// and the socket inodes in /proc/<pid>/fd.
    static func pidListening(on port: Int) -> Int32? {
        var inodes = Set<String>()
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count > 9, f[3] == "0A", let colon = f[1].lastIndex(of: ":"),
                      Int(f[1][f[1].index(after: colon)...], radix: 16) == port else { continue }
                inodes.insert(String(f[9]))
            }
        }
        guard !inodes.isEmpty, let pids = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        for pid in pids where Int32(pid) != nil {
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { continue }
            for fd in fds {
                if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
                   target.hasPrefix("socket:["), inodes.contains(String(target.dropFirst(8).dropLast())) {
                    return Int32(pid)
                }
            }
        }
        return nil
    }

    /// (current, peak) resident set size in bytes.
    static func rss(pid: Int32) -> (current: Int64, peak: Int64)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        var cur: Int64?, peak: Int64?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if line.hasPrefix("VmRSS:"), parts.count > 1 { cur = Int64(parts[1]).map { $0 * 1024 } }
            if line.hasPrefix("VmHWM:"), parts.count > 1 { peak = Int64(parts[1]).map { $0 * 1024 } }
        }
        guard let cur, let peak else { return nil }
        return (cur, peak)
    }

    /// CPU seconds (user + system) used by `pid` so far.
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let f = text[text.index(after: close)...].split(separator: " ")
        guard f.count > 13, let u = Double(f[11]), let s = Double(f[12]) else { return nil }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// Bytes in binary units with a precision that suits a terminal line.
public func formatBytes(_ b: Double) -> String {
    let kib = 1024.0, mib = kib * 1024, gib = mib * 1024
    if b >= gib { return String(format: "%.2f GiB", b / gib) }
    if b >= mib { return String(format: "%.1f MiB", b / mib) }
    if b >= kib { return String(format: "%.1f KiB", b / kib) }
    return String(format: "%.0f B", b)
}

/// Where a broker keeps its data, and what that storage is: the bench reports it because figures
/// on tmpfs (no real fsync) mean nothing for durability.
enum StorageProbe {
    /// The broker's `--data-dir` from its command line.
    static func dataDirectory(pid: Int32) -> String? {
        guard let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        let args = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let i = args.firstIndex(of: "--data-dir"), i + 1 < args.count else { return nil }
        return args[i + 1]
    }

    /// The file system type of `path`: the mount with the longest mount point containing it, from
    /// /proc/self/mounts.
    static func fileSystemType(_ path: String) -> String {
        let absolute = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        guard let text = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return "unknown" }
        var best: (point: String, type: String)? = nil
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 3 else { continue }
            let point = String(f[1])
            let within = point == "/" || absolute == point || absolute.hasPrefix(point + "/")
            if within && point.count >= (best?.point.count ?? -1) { best = (point, String(f[2])) }
        }
        return best.map { "\($0.type) (mounted at \($0.point))" } ?? "unknown"
    }

    /// Milliseconds one 4 KiB write plus fdatasync takes in `directory` (median of 5).
    static func fsyncMillis(in directory: String) -> Double? {
        let path = "\(directory)/.bench-fsync-probe-\(getpid())"
        let fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0o600)
        guard fd >= 0 else { return nil }
        defer { close(fd); unlink(path) }
        let block = [UInt8](repeating: 0x5A, count: 4096)
        var samples: [Double] = []
        for i in 0..<5 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = block.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, off_t(i * 4096)) }
            guard fdatasync(fd) == 0 else { return nil }
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        return samples.sorted()[2]
    }
}
