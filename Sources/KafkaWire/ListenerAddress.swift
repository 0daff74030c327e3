/// A listener as written on the command line, in server.properties or in topology.json:
/// `PLAINTEXT://host:port` or `SSL://host:port`. The broker binds to it; clients pick the one
/// whose security protocol they speak and connect to its host and port.
public struct ListenerAddress: Sendable, Equatable, CustomStringConvertible {
    public enum SecurityProtocol: String, Sendable {
        case plaintext = "PLAINTEXT"
        case ssl = "SSL"
    }

    public var securityProtocol: SecurityProtocol
    public var host: String
    public var port: Int

    public init(securityProtocol: SecurityProtocol, host: String, port: Int) {
        self.securityProtocol = securityProtocol
        self.host = host
        self.port = port
    }

    public enum ParseError: Error, CustomStringConvertible {
        case invalid(String, String)
        public var description: String {
            switch self {
            case .invalid(let text, let why):
                return "invalid listener '\(text)': \(why); expected PLAINTEXT://HOST:PORT or SSL://HOST:PORT"
            }
        }
    }

    public init(parsing text: String) throws {
        guard let sep = text.range(of: "://") else { throw ParseError.invalid(text, "missing '://'") }
        let proto = text[..<sep.lowerBound].uppercased()
        guard let sp = SecurityProtocol(rawValue: proto) else {
            throw ParseError.invalid(text, "unknown security protocol '\(proto)' (SASL is not supported)")
        }
        let rest = text[sep.upperBound...]
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]), (0...65535).contains(port) else {
            throw ParseError.invalid(text, "missing or bad port")
        }
        var host = String(rest[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.init(securityProtocol: sp, host: host.isEmpty ? "0.0.0.0" : host, port: port)
    }

    public var description: String { "\(securityProtocol.rawValue)://\(hostPort)" }

    /// `host:port`, with an IPv6 host in brackets: what a client's bootstrap list takes.
    public var hostPort: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(h):\(port)"
    }

    /// Whether the listener speaks TLS.
    public var isTLS: Bool { securityProtocol == .ssl }
}
