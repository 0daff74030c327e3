import ArgumentParser
import Foundation
import KafkaWire

/// Kafka-style properties with Kafka's (and librdkafka's) names: a broker's `server.properties` file
/// (`--config-file`) and `--set KEY=VALUE` overrides, or a client command's `-X KEY=VALUE`.
///
/// A command takes what it uses; every other property is reported once as ignored, never fatal,
/// so a stock Apache Kafka file starts a broker and a kcat command line's `-X` settings work.
struct KafkaProperties {
    private(set) var values: [String: String] = [:]
    /// Keys in the order they were first given, for messages.
    private(set) var order: [String] = []
    private var used = Set<String>()

    init() {}

    /// Parses `.properties` text: `key=value` or `key: value` lines, `#` and `!` comments,
    /// backslash line continuations. `origin` names the source in error messages.
    init(text: String, origin: String) throws {
        var logical: [(Int, String)] = []
        var pending = ""
        var pendingLine = 0
        for (i, raw) in text.components(separatedBy: .newlines).enumerated() {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if pending.isEmpty {
                if line.isEmpty || line.hasPrefix("#") || line.hasPrefix("!") { continue }
                pendingLine = i + 1
            }
            let continues = line.hasSuffix("\\") && !line.hasSuffix("\\\\")
            if continues { line.removeLast() }
            pending += line
            if !continues {
                logical.append((pendingLine, pending))
                pending = ""
            }
        }
        if !pending.isEmpty { logical.append((pendingLine, pending)) }
        for (lineNumber, line) in logical {
            guard let sep = line.firstIndex(where: { $0 == "=" || $0 == ":" }) else {
                throw ValidationError("\(origin):\(lineNumber): '\(line)' is not KEY=VALUE")
            }
            let key = line[..<sep].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: sep)...].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty else { throw ValidationError("\(origin):\(lineNumber): a property has no name") }
            set(key, value)
        }
    }

    mutating func set(_ key: String, _ value: String) {
        if values[key] == nil { order.append(key) }
        values[key] = value
    }

    /// `KEY=VALUE` pairs as given to `flag` (later ones win).
    init(pairs: [String], flag: String) throws {
        for o in pairs {
            let parts = o.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("\(flag) takes KEY=VALUE, got '\(o)'") }
            set(parts[0].trimmingCharacters(in: .whitespaces), parts[1].trimmingCharacters(in: .whitespaces))
        }
    }

    /// The file (if any) with the `--set` overrides applied.
    static func load(file: String?, overrides: [String]) throws -> KafkaProperties {
        var p = KafkaProperties()
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ValidationError("cannot read --config-file \(file); give the path of a Kafka server.properties file")
            }
            p = try KafkaProperties(text: String(decoding: data, as: UTF8.self), origin: file)
        }
        for (k, v) in try KafkaProperties(pairs: overrides, flag: "--set").pairs { p.set(k, v) }
        return p
    }

    /// The value of the first of `names` that is set, marking it used.
    mutating func string(_ names: String...) -> String? {
        for n in names { if let v = values[n] { used.insert(n); return v } }
        return nil
    }

    mutating func number<T: FixedWidthInteger>(_ names: String..., as: T.Type = T.self) throws -> T? {
        for n in names {
            guard let v = values[n] else { continue }
            used.insert(n)
            guard let x = T(v) else { throw ValidationError("\(n)=\(v): expected a whole number") }
            return x
        }
        return nil
    }

    mutating func bool(_ names: String...) throws -> Bool? {
        for name in names {
            guard let v = values[name] else { continue }
            used.insert(name)
            switch v.lowercased() {
            case "true": return true
            case "false": return false
            default: throw ValidationError("\(name)=\(v): expected true or false")
            }
        }
        return nil
    }

    /// Marks properties as understood without a value being taken (e.g. ones a flag overrode).
    mutating func markUsed(_ names: String...) { for n in names where values[n] != nil { used.insert(n) } }

    /// Every property, in the order given.
    var pairs: [(String, String)] { order.map { ($0, values[$0]!) } }

    /// One of `choices` (compared without case), or nil when not set.
    mutating func choice(_ names: String..., among choices: [String]) throws -> String? {
        for n in names {
            guard let v = values[n] else { continue }
            used.insert(n)
            guard let c = choices.first(where: { $0.caseInsensitiveCompare(v) == .orderedSame }) else {
                throw ValidationError("\(n)=\(v): expected one of \(choices.joined(separator: ", "))")
            }
            return c
        }
        return nil
    }

    /// Properties given but not used, in the order given.
    var ignored: [String] { order.filter { !used.contains($0) } }

    /// `listeners` / `advertised.listeners` in Kafka's form: `NAME://host:port` entries whose
    /// security protocol comes from `listener.security.protocol.map` (PLAINTEXT and SSL map to
    /// themselves). Controller listeners (`controller.listener.names`) are left out: a Meridian
    /// broker has no controller role. Returns (name, address) pairs.
    mutating func listeners(_ key: String) throws -> [(name: String, address: ListenerAddress)]? {
        guard let text = string(key) else { return nil }
        var map = ["PLAINTEXT": "PLAINTEXT", "SSL": "SSL", "SASL_PLAINTEXT": "SASL_PLAINTEXT", "SASL_SSL": "SASL_SSL"]
        if let m = string("listener.security.protocol.map") {
            for pair in m.split(separator: ",") {
                let kv = pair.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces).uppercased() }
                if kv.count == 2 { map[kv[0]] = kv[1] }
            }
        }
        let controllers = Set((string("controller.listener.names") ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces).uppercased()
        })
        var out: [(String, ListenerAddress)] = []
        for entry in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            guard let sep = entry.range(of: "://") else { throw ValidationError("\(key): '\(entry)' is not NAME://HOST:PORT") }
            let name = entry[..<sep.lowerBound].uppercased()
            if controllers.contains(name) { continue }
            guard let proto = map[name] else {
                throw ValidationError("\(key): listener \(name) has no security protocol in listener.security.protocol.map")
            }
            guard proto == "PLAINTEXT" || proto == "SSL" else {
                throw ValidationError("\(key): listener \(name) uses \(proto); Meridian serves PLAINTEXT and SSL listeners (no SASL)")
            }
            out.append((name, try ListenerAddress(parsing: proto + String(entry[sep.lowerBound...]))))
        }
        return out
    }
}
