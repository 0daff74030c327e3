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

func formatBytes(_ b: Double) -> String {
    let kib = 1024.0, mib = kib * 1024, gib = mib * 1024
    if b >= gib { return String(format: "%.2f GiB", b / gib) }
    if b >= mib { return String(format: "%.1f MiB", b / mib) }
    if b >= kib { return String(format: "%.1f KiB", b / kib) }
    return String(format: "%.0f B", b)
}
