import Foundation

/// Measures raw loopback TCP throughput of this machine: one thread writes 1 MiB chunks into a
/// connected socket as fast as it can, another reads them, for `seconds`. This is the ceiling any
/// Kafka transfer over loopback can reach and the yardstick the benchmark reports ratios against.
enum LoopbackPump {
    static func measure(seconds: Double = 2) -> Double {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) } }
        listen(listener, 1)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        let port = addr.sin_port

        let total = ManagedCounter()
        let reader = Thread {
            let fd = accept(listener, nil, nil)
            var buf = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = recv(fd, &buf, buf.count, 0)
                if n <= 0 { break }
                total.add(n)
            }
            close(fd)
        }
        reader.start()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_addr.s_addr = inet_addr("127.0.0.1")
        to.sin_port = port
        _ = withUnsafePointer(to: &to) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, len) } }
        let chunk = [UInt8](repeating: 0x5A, count: 1 << 20)
        let start = Date()
        let startBytes = total.value
        while Date().timeIntervalSince(start) < seconds {
            _ = chunk.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        let elapsed = Date().timeIntervalSince(start)
        let bytes = total.value - startBytes
        close(fd)
        return Double(bytes) / elapsed
    }
}

/// A counter shared by threads (bytes moved by a load, records written by a producer).
public final class ManagedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var v = 0
    public init() {}
    public func add(_ n: Int) { lock.lock(); v += n; lock.unlock() }
    public var value: Int { lock.lock(); defer { lock.unlock() }; return v }
}
