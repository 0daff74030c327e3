import Foundation

/// Ports on this machine's loopback, for tools that start local listeners (`meridian demo`,
/// `meridian bench mirror`) and tests.
public enum LocalPort {
    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String { "cannot find a free TCP port on 127.0.0.1" }
    }

    /// A TCP port on 127.0.0.1 that nothing listens on right now, chosen outside the kernel's
    /// ephemeral range: a port the kernel hands out (bind to port 0) is also what it gives the next
    /// outgoing connection, so on a busy machine a listener started a moment later could find it
    /// taken. Falls back to the kernel's pick when no port outside the range is free.
    public static func free() throws -> Int {
        let (lo, hi) = ephemeralRange()
        // The larger stretch outside the range (below it on a default Linux: 32768–60999).
        let span = lo - 10_000 >= 65_535 - hi ? 10_000..<lo : (hi + 1)..<65_536
        if span.count > 100 {
            for _ in 0..<200 {
                let p = Int.random(in: span)
                if bindable(p) { return p }
            }
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Unavailable() }
        defer { close(fd) }
        var addr = loopback(0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    static func loopback(_ port: Int) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(truncatingIfNeeded: port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return addr
    }

    /// Whether a listener could bind `port` on 127.0.0.1 now.
    static func bindable(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        var addr = loopback(port)
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }

    /// The kernel's range for outgoing connections' local ports (Linux default 32768–60999).
    static func ephemeralRange() -> (Int, Int) {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8) else { return (32_768, 60_999) }
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        guard parts.count == 2, parts[0] >= 1, parts[0] <= parts[1], parts[1] <= 65_535 else { return (32_768, 60_999) }
        return (parts[0], parts[1])
    }
}
