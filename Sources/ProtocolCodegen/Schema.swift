import Foundation

/// A version range as written in the Kafka schema files: `"3+"`, `"0-7"`, `"5"` or `"none"`.
public struct VersionRange: Equatable, Sendable {
    /// Lowest version, inclusive. `nil` means the range is empty (`"none"`).
    public var lowest: Int?
    /// Highest version, inclusive; `nil` with a non-nil `lowest` means open-ended.
    public var highest: Int?

    public static let none = VersionRange(lowest: nil, highest: nil)

    public var isEmpty: Bool { lowest == nil }

    public init(lowest: Int?, highest: Int?) {
        self.lowest = lowest
        self.highest = highest
    }

    public init(parsing text: String) throws {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t == "none" || t.isEmpty {
            self = .none
        } else if t.hasSuffix("+") {
            guard let lo = Int(t.dropLast()) else { throw SchemaError.badVersions(text) }
            self.init(lowest: lo, highest: nil)
        } else if let dash = t.firstIndex(of: "-") {
            guard let lo = Int(t[..<dash]), let hi = Int(t[t.index(after: dash)...]) else {
                throw SchemaError.badVersions(text)
            }
            self.init(lowest: lo, highest: hi)
        } else {
            guard let v = Int(t) else { throw SchemaError.badVersions(text) }
            self.init(lowest: v, highest: v)
        }
    }

    public func contains(_ v: Int) -> Bool {
        guard let lo = lowest else { return false }
        return v >= lo && (highest.map { v <= $0 } ?? true)
    }

    /// The part of this range inside `other`.
    public func intersection(_ other: VersionRange) -> VersionRange {
        guard let a = lowest, let b = other.lowest else { return .none }
        let lo = max(a, b)
        let hi: Int?
        switch (highest, other.highest) {
        case (nil, nil): hi = nil
        case (let x?, nil): hi = x
        case (nil, let y?): hi = y
        case (let x?, let y?): hi = min(x, y)
        }
        if let hi, hi < lo { return .none }
        return VersionRange(lowest: lo, highest: hi)
    }

    /// Whether every version of `within` is in this range.
    public func covers(_ within: VersionRange) -> Bool {
        intersection(within) == within
    }

    /// A Swift boolean expression over `version` that is true for the versions of this range
    /// that lie inside `context`, assuming `version` is already known to be inside `context`.
    public func condition(within context: VersionRange) -> String {
        let r = intersection(context)
        guard let lo = r.lowest else { return "false" }
        if r == context { return "true" }
        let needLow = lo > (context.lowest ?? 0)
        let needHigh: Bool
        if let hi = r.highest {
            needHigh = context.highest.map { hi < $0 } ?? true
        } else {
            needHigh = false
        }
        switch (needLow, needHigh) {
        case (false, false): return "true"
        case (true, false): return "version >= \(lo)"
        case (false, true): return "version <= \(r.highest!)"
        case (true, true):
            if lo == r.highest! { return "version == \(lo)" }
            return "(version >= \(lo) && version <= \(r.highest!))"
        }
    }
}

public enum SchemaError: Error, CustomStringConvertible {
    case badVersions(String)
    case badJSON(String, String)
    case unknownType(String, String)
    case duplicateStruct(String, String)

    public var description: String {
        switch self {
        case .badVersions(let t): return "cannot parse version range '\(t)'"
        case .badJSON(let file, let why): return "\(file): \(why)"
        case .unknownType(let file, let t): return "\(file): unknown field type '\(t)'"
        case .duplicateStruct(let file, let n): return "\(file): struct '\(n)' is defined twice with different fields"
        }
    }
}

/// One field of a message or struct in a schema file.
public struct FieldSpec: Sendable {
    public var name: String
    public var type: String
    public var versions: VersionRange
    public var nullableVersions: VersionRange
    public var taggedVersions: VersionRange
    public var tag: Int?
    public var defaultValue: String?
    public var entityType: String?
    public var fields: [FieldSpec]?

    init(json: [String: Any], file: String) throws {
        guard let name = json["name"] as? String, let type = json["type"] as? String else {
            throw SchemaError.badJSON(file, "field without name or type")
        }
        self.name = name
        self.type = type
        self.versions = try VersionRange(parsing: json["versions"] as? String ?? "none")
        self.nullableVersions = try VersionRange(parsing: json["nullableVersions"] as? String ?? "none")
        self.taggedVersions = try VersionRange(parsing: json["taggedVersions"] as? String ?? "none")
        self.tag = json["tag"] as? Int
        if let d = json["default"] as? String {
            self.defaultValue = d
        } else if let d = json["default"] as? Bool {
            self.defaultValue = d ? "true" : "false"
        } else if let d = json["default"] as? Int {
            self.defaultValue = String(d)
        }
        self.entityType = json["entityType"] as? String
        if let sub = json["fields"] as? [[String: Any]] {
            self.fields = try sub.map { try FieldSpec(json: $0, file: file) }
        }
    }

    public var isArray: Bool { type.hasPrefix("[]") }
    public var elementType: String { isArray ? String(type.dropFirst(2)) : type }
    public var isTaggedSomewhere: Bool { !taggedVersions.isEmpty }
}

/// A struct defined in a schema file, either inline in a field or under `commonStructs`.
public struct StructSpec: Sendable {
    public var name: String
    public var fields: [FieldSpec]
    /// Versions of the enclosing message in which this struct can appear.
    public var versions: VersionRange
}

/// A whole schema file.
public struct MessageSpec: Sendable {
    public var fileName: String
    public var name: String
    public var kind: String
    public var apiKey: Int?
    public var validVersions: VersionRange
    public var flexibleVersions: VersionRange
    public var fields: [FieldSpec]
    public var commonStructs: [StructSpec]

    public init(fileName: String, text: String) throws {
        // The schema files are JSON with whole-line `//` comments.
        let stripped = text.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("//") }
            .joined(separator: "\n")
        guard let data = stripped.data(using: .utf8),
              let json = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw SchemaError.badJSON(fileName, "not a JSON object") }
        self.fileName = fileName
        guard let name = json["name"] as? String, let kind = json["type"] as? String else {
            throw SchemaError.badJSON(fileName, "missing name or type")
        }
        self.name = name
        self.kind = kind
        self.apiKey = json["apiKey"] as? Int
        self.validVersions = try VersionRange(parsing: json["validVersions"] as? String ?? "none")
        self.flexibleVersions = try VersionRange(parsing: json["flexibleVersions"] as? String ?? "none")
        self.fields = try (json["fields"] as? [[String: Any]] ?? []).map { try FieldSpec(json: $0, file: fileName) }
        self.commonStructs = []
        for cs in json["commonStructs"] as? [[String: Any]] ?? [] {
            guard let n = cs["name"] as? String else { throw SchemaError.badJSON(fileName, "common struct without name") }
            let fs = try (cs["fields"] as? [[String: Any]] ?? []).map { try FieldSpec(json: $0, file: fileName) }
            let v = try VersionRange(parsing: cs["versions"] as? String ?? "0+")
            commonStructs.append(StructSpec(name: n, fields: fs, versions: v.intersection(validVersions)))
        }
    }
}
