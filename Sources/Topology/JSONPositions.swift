/// Where each value of a JSON document starts (line and column, from 1), by path:
/// `regions[1].brokers[0].listeners[2]`, `flows[0].tls`. So a problem found in the decoded
/// topology can point at its place in the file. A document that does not scan gives no positions.
public struct JSONPositions: Sendable {
    public struct Position: Sendable, Equatable, CustomStringConvertible {
        public var line: Int
        public var column: Int
        public var description: String { "\(line):\(column)" }
    }

    public private(set) var positions: [String: Position] = [:]

    public init(_ text: String) {
        var scanner = Scanner(Array(text.utf8))
        if (try? scanner.value(path: "", into: &positions)) == nil { positions = [:] }
    }

    /// The position of `path`, or of its closest enclosing value that has one.
    public func position(of path: String) -> Position? {
        var p = path
        while true {
            if let found = positions[p] { return found }
            guard let cut = p.lastIndex(where: { $0 == "." || $0 == "[" }) else { return positions[""] }
            p = String(p[..<cut])
        }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var i = 0
        var line = 1
        var lineStart = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }

        struct Bad: Error {}

        mutating func skipSpace() {
            while i < bytes.count {
                switch bytes[i] {
                case UInt8(ascii: "\n"):
                    line += 1
                    i += 1
                    lineStart = i
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"):
                    i += 1
                default:
                    return
                }
            }
        }

        mutating func value(path: String, into out: inout [String: Position]) throws {
            skipSpace()
            guard i < bytes.count else { throw Bad() }
            out[path] = Position(line: line, column: i - lineStart + 1)
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return }
                while true {
                    skipSpace()
                    let key = try string()
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw Bad() }
                    i += 1
                    try value(path: path.isEmpty ? key : "\(path).\(key)", into: &out)
                    skipSpace()
                    guard i < bytes.count else { throw Bad() }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return }
                    throw Bad()
                }
            case UInt8(ascii: "["):
                i += 1
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return }
                var n = 0
                while true {
                    try value(path: "\(path)[\(n)]", into: &out)
                    n += 1
                    skipSpace()
                    guard i < bytes.count else { throw Bad() }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return }
                    throw Bad()
                }
            case UInt8(ascii: "\""):
                _ = try string()
            default:
                // number, true, false, null
                while i < bytes.count, !",}] \t\r\n".utf8.contains(bytes[i]) { i += 1 }
            }
        }

        mutating func string() throws -> String {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw Bad() }
            i += 1
            var out: [UInt8] = []
            while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
                if bytes[i] == UInt8(ascii: "\\") { i += 1 }
                if i < bytes.count { out.append(bytes[i]) }
                i += 1
            }
            guard i < bytes.count else { throw Bad() }
            i += 1
            return String(decoding: out, as: UTF8.self)
        }
    }
}
