/// One `HOST:PORT` of a bootstrap list (`--bootstrap a:9092,b:9092`).
public struct BootstrapAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses a comma-separated list; IPv6 hosts go in brackets (`[::1]:9092`).
    public static func parseList(_ text: String) throws -> [BootstrapAddress] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !parts.isEmpty else { throw KafkaClientError.invalidArgument("the bootstrap list is empty; give HOST:PORT[,HOST:PORT...]") }
        return try parts.map { p in
            guard let colon = p.lastIndex(of: ":"), let port = Int(p[p.index(after: colon)...]), (1...65535).contains(port) else {
                throw KafkaClientError.invalidArgument("'\(p)' is not HOST:PORT")
            }
            var host = String(p[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            return BootstrapAddress(host: host, port: port)
        }
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

import KafkaWire
