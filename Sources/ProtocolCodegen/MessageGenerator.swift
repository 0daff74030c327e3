import Foundation

/// Writes the Swift codec for one schema file, and the random-sample builder the tests use.
///
/// The output is straight-line code: one `encode` and one decoding `init` per struct, with
/// explicit `if version ...` guards, so the compiler has little to infer.
struct MessageGenerator {
    let spec: MessageSpec
    /// Structs in the order they are emitted, with the version context they are used in.
    private(set) var structs: [StructSpec] = []

    init(spec: MessageSpec) throws {
        self.spec = spec
        var seen: [String: Int] = [:]
        func collect(_ fields: [FieldSpec], context: VersionRange) throws {
            for f in fields {
                let fieldContext = f.versions.intersection(context)
                if let sub = f.fields {
                    let name = SwiftNames.typeName(f.elementType)
                    if let i = seen[name] {
                        // Identical re-definitions are allowed; widen the context.
                        guard structs[i].fields.map(\.name) == sub.map(\.name) else {
                            throw SchemaError.duplicateStruct(spec.fileName, name)
                        }
                        structs[i].versions = spec.validVersions
                    } else {
                        seen[name] = structs.count
                        structs.append(StructSpec(name: name, fields: sub, versions: fieldContext))
                    }
                    try collect(sub, context: fieldContext)
                }
            }
        }
        try collect(spec.fields, context: spec.validVersions)
        for cs in spec.commonStructs {
            let name = SwiftNames.typeName(cs.name)
            if seen[name] == nil {
                seen[name] = structs.count
                structs.append(StructSpec(name: name, fields: cs.fields, versions: spec.validVersions))
            }
            try collect(cs.fields, context: spec.validVersions)
        }
    }

    var typeName: String { SwiftNames.typeName(spec.name) }

    /// The API's name without the Request/Response suffix, e.g. `ListOffsets`.
    var apiName: String {
        for suffix in ["Request", "Response"] where typeName.hasSuffix(suffix) {
            return String(typeName.dropLast(suffix.count))
        }
        return typeName
    }

    private var flexibleStart: Int? { spec.flexibleVersions.lowest }

    // MARK: - Types

    private func isOptional(_ f: FieldSpec, context: VersionRange) -> Bool {
        if f.type == "records" { return true }
        return !f.nullableVersions.intersection(f.versions).intersection(context).isEmpty
    }

    /// The strong type of a field: the schema's entity types, and `ErrorCode` for every int16 error code.
    private func strongType(_ f: FieldSpec) -> String? {
        if let e = SwiftNames.entity(f.entityType, schemaType: f.elementType) { return e }
        if f.elementType == "int16" && f.name.hasSuffix("ErrorCode") { return "ErrorCode" }
        return nil
    }

    private func elementSwiftType(_ f: FieldSpec) -> String {
        let e = f.elementType
        if let ent = strongType(f) { return ent }
        if let p = SwiftNames.primitive(e) { return p }
        return SwiftNames.typeName(e)
    }

    private func swiftType(_ f: FieldSpec, context: VersionRange) -> String {
        var t = elementSwiftType(f)
        if f.isArray { t = "[\(t)]" }
        if isOptional(f, context: context) { t += "?" }
        return t
    }

    private func isStructType(_ schemaType: String) -> Bool {
        SwiftNames.primitive(schemaType) == nil
    }

    private func defaultExpr(_ f: FieldSpec, context: VersionRange) -> String {
        let optional = isOptional(f, context: context)
        if f.type == "records" { return "nil" }
        if optional && (f.defaultValue == "null") { return "nil" }
        if f.isArray { return "[]" }
        switch f.type {
        case "bool": return f.defaultValue == "true" ? "true" : "false"
        case "int8", "int16", "uint16", "int32", "uint32", "int64":
            if strongType(f) == "ErrorCode" {
                guard let d = f.defaultValue, !d.isEmpty, d != "0" else { return "ErrorCode.none" }
                return "ErrorCode(rawValue: \(d))"
            }
            guard let d = f.defaultValue, !d.isEmpty else { return "0" }
            if d.hasPrefix("0x") { return String(Int64(d.dropFirst(2), radix: 16)!) }
            return String(Int64(d)!)
        case "float64":
            guard let d = f.defaultValue, !d.isEmpty else { return "0.0" }
            return String(Double(d)!)
        case "string":
            let d = (f.defaultValue ?? "").replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\"", with: "\\\"")
            return "\"\(d)\""
        case "bytes": return "ByteBuffer()"
        case "uuid": return "KafkaUUID.zero"
        default: return "\(SwiftNames.typeName(f.type))()"
        }
    }

    // MARK: - Emission

    func render() -> String {
        var out: [String] = []
        out.append("// Generated by protocol-codegen from schemas/kafka/\(spec.fileName). Do not edit by hand;")
        out.append("// change the generator or the schema and run `swift run protocol-codegen`.")
        out.append("import NIOCore")
        out.append("")
        var conformance = "KafkaMessage"
        if spec.kind == "request" { conformance = "KafkaRequestMessage" }
        if spec.kind == "response" { conformance = "KafkaResponseMessage" }
        out.append("public struct \(typeName): \(conformance) {")
        if spec.kind == "request" {
            let respName = typeName.replacingOccurrences(of: "Request", with: "Response")
            out.append("    public typealias Response = \(respName)")
        }
        if spec.apiKey != nil {
            out.append("    public static let apiKey = ApiKey.\(SwiftNames.property(apiName))")
        }
        let lo = spec.validVersions.lowest ?? 0
        let hi = spec.validVersions.highest ?? lo
        out.append("    public static let validVersions: ClosedRange<Int16> = \(lo)...\(hi)")
        if let f = flexibleStart {
            out.append("    public static let firstFlexibleVersion: Int16? = \(f)")
        } else {
            out.append("    public static let firstFlexibleVersion: Int16? = nil")
        }
        out.append("")
        out += body(name: typeName, fields: spec.fields, context: spec.validVersions, indent: "    ")
        for s in structs {
            out.append("")
            out.append("    public struct \(s.name): Sendable, Equatable {")
            out += body(name: s.name, fields: s.fields, context: s.versions, indent: "        ")
            out.append("    }")
        }
        out.append("}")
        out.append("")
        return out.joined(separator: "\n")
    }

    private func body(name: String, fields: [FieldSpec], context: VersionRange, indent: String) -> [String] {
        var out: [String] = []
        let live = fields.filter { !$0.versions.intersection(context).isEmpty }
        for f in live {
            out.append("\(indent)public var \(SwiftNames.property(f.name)): \(swiftType(f, context: context)) = \(defaultExpr(f, context: context))")
        }
        if flexibleStart != nil {
            out.append("\(indent)/// Tagged fields this version of the code does not know, kept for a faithful re-encode.")
            out.append("\(indent)public var unknownTaggedFields: [TaggedField] = []")
        }
        out.append("")
        out.append("\(indent)public init() {}")
        if !live.isEmpty {
            out.append("")
            let params = live.map { "\(SwiftNames.property($0.name)): \(swiftType($0, context: context)) = \(defaultExpr($0, context: context))" }
            out.append("\(indent)public init(")
            for (i, p) in params.enumerated() {
                out.append("\(indent)    \(p)\(i == params.count - 1 ? "" : ",")")
            }
            out.append("\(indent)) {")
            for f in live {
                let p = SwiftNames.property(f.name)
                out.append("\(indent)    self.\(SwiftNames.bare(p)) = \(p)")
            }
            out.append("\(indent)}")
        }
        out.append("")
        out += encodeFunction(fields: live, context: context, indent: indent)
        out.append("")
        out += decodeFunction(fields: live, context: context, indent: indent)
        if spec.kind == "response" {
            out.append("")
            out += errorCodeFunction(fields: live, context: context, indent: indent)
        }
        return out
    }

    /// Whether a field is, or holds somewhere inside it, an error code.
    private func carriesErrorCode(_ f: FieldSpec, depth: Int = 0) -> Bool {
        if strongType(f) == "ErrorCode" { return true }
        guard depth < 16, let sub = f.fields ?? structs.first(where: { $0.name == SwiftNames.typeName(f.elementType) })?.fields else { return false }
        return sub.contains { carriesErrorCode($0, depth: depth + 1) }
    }

    /// Responses: a visitor over every error code, nested ones included (the broker counts them for /metrics).
    private func errorCodeFunction(fields: [FieldSpec], context: VersionRange, indent: String) -> [String] {
        var out = ["\(indent)/// Calls `body` with every error code of this message, nested ones included.",
                   "\(indent)public func forEachErrorCode(_ body: (ErrorCode) -> Void) {"]
        for f in fields {
            let p = "self.\(SwiftNames.bare(SwiftNames.property(f.name)))"
            let isError = strongType(f) == "ErrorCode"
            let isStruct = strongType(f) == nil && isStructType(f.elementType) && carriesErrorCode(f)
            guard isError || isStruct else { continue }
            let call = isError ? "body(e)" : "e.forEachErrorCode(body)"
            let optional = isOptional(f, context: context)
            if f.isArray {
                out.append(optional ? "\(indent)    if let a = \(p) { for e in a { \(call) } }" : "\(indent)    for e in \(p) { \(call) }")
            } else if isError {
                out.append(optional ? "\(indent)    if let e = \(p) { \(call) }" : "\(indent)    body(\(p))")
            } else {
                out.append(optional ? "\(indent)    if let e = \(p) { \(call) }" : "\(indent)    \(p).forEachErrorCode(body)")
            }
        }
        out.append("\(indent)}")
        return out
    }

    /// The versions of `context` inside an `if flexible` block.
    private func flexibleContext(_ context: VersionRange) -> VersionRange {
        context.intersection(VersionRange(lowest: flexibleStart, highest: nil))
    }

    private var flexExpr: String { flexibleStart == nil ? "false" : "flexible" }

    private func flexibleLet(context: VersionRange, indent: String) -> [String] {
        guard let f = flexibleStart else { return [] }
        return ["\(indent)let flexible = version >= \(f)"]
    }

    // MARK: Encode

    private func encodeFunction(fields: [FieldSpec], context: VersionRange, indent: String) -> [String] {
        var out: [String] = []
        out.append("\(indent)public func encode(to w: inout KafkaWriter, version: Int16) throws {")
        let i2 = indent + "    "
        out += flexibleLet(context: context, indent: i2)
        var counter = 0
        for f in fields {
            let regular = regularVersions(f).intersection(context)
            if regular.isEmpty { continue }
            let cond = regular.condition(within: context)
            let stmts = encodeField(f, expr: "self.\(SwiftNames.bare(SwiftNames.property(f.name)))", context: context,
                                    guarded: regular, writer: "w", flexible: flexExpr, indent: cond == "true" ? i2 : i2 + "    ", counter: &counter)
            if cond == "true" {
                out += stmts
            } else {
                out.append("\(i2)if \(cond) {")
                out += stmts
                out.append("\(i2)}")
            }
        }
        if flexibleStart != nil {
            let tagged = fields.filter { !$0.taggedVersions.intersection(context).isEmpty }
                .sorted { ($0.tag ?? 0) < ($1.tag ?? 0) }
            out.append("\(i2)if flexible {")
            if tagged.isEmpty {
                out.append("\(i2)    w.writeTaggedFields([], unknown: unknownTaggedFields)")
            } else {
                out.append("\(i2)    var tagged: [TaggedField] = []")
                for f in tagged {
                    let p = "self.\(SwiftNames.bare(SwiftNames.property(f.name)))"
                    let cond = f.taggedVersions.intersection(context).condition(within: flexibleContext(context))
                    out.append("\(i2)    if \(cond == "true" ? "" : "\(cond), ")\(p) != \(defaultExpr(f, context: context)) {")
                    out.append("\(i2)        var tw = KafkaWriter()")
                    out += encodeField(f, expr: p, context: context, guarded: f.taggedVersions.intersection(context), writer: "tw", flexible: "true", indent: i2 + "        ", counter: &counter)
                    out.append("\(i2)        tagged.append(TaggedField(tag: \(f.tag ?? 0), data: tw.buffer))")
                    out.append("\(i2)    }")
                }
                out.append("\(i2)    w.writeTaggedFields(tagged, unknown: unknownTaggedFields)")
            }
            out.append("\(i2)}")
        }
        out.append("\(indent)}")
        return out
    }

    /// Versions in which the field is written in the fixed part (not as a tagged field).
    private func regularVersions(_ f: FieldSpec) -> VersionRange {
        if f.taggedVersions.isEmpty { return f.versions }
        // Tagged fields are tagged wherever they exist in this project's schemas; a field that is
        // regular in early versions and tagged later would need a split range.
        guard let tlo = f.taggedVersions.lowest, let lo = f.versions.lowest, lo < tlo else { return .none }
        return VersionRange(lowest: lo, highest: tlo - 1)
    }

    /// `guarded`: the versions in which the surrounding code runs, so conditions inside say only what
    /// those versions do not already imply.
    private func encodeField(_ f: FieldSpec, expr: String, context: VersionRange, guarded: VersionRange, writer w: String,
                             flexible: String, indent: String, counter: inout Int) -> [String] {
        let optional = isOptional(f, context: context)
        let nullableCond = f.nullableVersions.intersection(f.versions).intersection(guarded).condition(within: guarded)
        let entity = strongType(f)
        if f.isArray {
            counter += 1
            let arr = "a\(counter)", el = "e\(counter)"
            var out: [String] = []
            var inner = indent
            if optional {
                out.append("\(indent)if let \(arr) = \(expr) {")
                inner = indent + "    "
            } else {
                out.append("\(indent)do {")
                out.append("\(indent)    let \(arr) = \(expr)")
                inner = indent + "    "
            }
            out.append("\(inner)\(w).writeArrayCount(\(arr).count, flexible: \(flexible))")
            out.append("\(inner)for \(el) in \(arr) {")
            out += encodeScalar(f.elementType, entity: entity, expr: el, writer: w, flexible: flexible, indent: inner + "    ")
            out.append("\(inner)}")
            if optional {
                out.append("\(indent)} else {")
                out.append("\(indent)    try \(w).writeNullArray(flexible: \(flexible), nullable: \(nullableCond))")
            }
            out.append("\(indent)}")
            return out
        }
        if optional {
            let raw = entity != nil ? "\(expr)?.rawValue" : expr
            switch f.type {
            case "string":
                return ["\(indent)try \(w).writeNullableString(\(raw), flexible: \(flexible), nullable: \(nullableCond))"]
            case "bytes":
                return ["\(indent)try \(w).writeNullableBytes(\(raw), flexible: \(flexible), nullable: \(nullableCond))"]
            case "records":
                return ["\(indent)\(w).writeRecords(\(raw), flexible: \(flexible))"]
            default:
                if isStructType(f.type) {
                    counter += 1
                    let v = "s\(counter)"
                    return [
                        "\(indent)if let \(v) = \(expr) {",
                        "\(indent)    \(w).writeInt8(1)",
                        "\(indent)    try \(v).encode(to: &\(w), version: version)",
                        "\(indent)} else {",
                        "\(indent)    try \(w).writeNullStruct(nullable: \(nullableCond))",
                        "\(indent)}",
                    ]
                }
                // Nullable primitives do not exist in the schemas.
                return ["\(indent)\(w).write\(SwiftNames.codecSuffix(f.type))(\(expr) ?? 0)"]
            }
        }
        return encodeScalar(f.type, entity: entity, expr: expr, writer: w, flexible: flexible, indent: indent)
    }

    private func encodeScalar(_ t: String, entity: String?, expr: String, writer w: String, flexible: String, indent: String) -> [String] {
        let raw = entity != nil ? "\(expr).rawValue" : expr
        switch t {
        case "string": return ["\(indent)\(w).writeString(\(raw), flexible: \(flexible))"]
        case "bytes": return ["\(indent)\(w).writeBytes(\(raw), flexible: \(flexible))"]
        case "records": return ["\(indent)\(w).writeRecords(\(raw), flexible: \(flexible))"]
        case "bool", "int8", "int16", "uint16", "int32", "uint32", "int64", "float64", "uuid":
            return ["\(indent)\(w).write\(SwiftNames.codecSuffix(t))(\(raw))"]
        default:
            return ["\(indent)try \(expr).encode(to: &\(w), version: version)"]
        }
    }

    // MARK: Decode

    private func decodeFunction(fields: [FieldSpec], context: VersionRange, indent: String) -> [String] {
        var out: [String] = []
        out.append("\(indent)public init(from r: inout ByteBuffer, version: Int16) throws {")
        let i2 = indent + "    "
        out.append("\(i2)self.init()")
        out += flexibleLet(context: context, indent: i2)
        var counter = 0
        for f in fields {
            let regular = regularVersions(f).intersection(context)
            if regular.isEmpty { continue }
            let cond = regular.condition(within: context)
            let stmts = decodeField(f, target: "self.\(SwiftNames.bare(SwiftNames.property(f.name)))", context: context,
                                    reader: "r", flexible: flexExpr, indent: cond == "true" ? i2 : i2 + "    ", counter: &counter)
            if cond == "true" {
                out += stmts
            } else {
                out.append("\(i2)if \(cond) {")
                out += stmts
                out.append("\(i2)}")
            }
        }
        if flexibleStart != nil {
            let tagged = fields.filter { !$0.taggedVersions.intersection(context).isEmpty }
                .sorted { ($0.tag ?? 0) < ($1.tag ?? 0) }
            out.append("\(i2)if flexible {")
            if tagged.isEmpty {
                out.append("\(i2)    self.unknownTaggedFields = try r.readTaggedFields()")
            } else {
                out.append("\(i2)    let unknown = try r.readTaggedFields { tag, field in")
                out.append("\(i2)        switch tag {")
                for f in tagged {
                    let cond = f.taggedVersions.intersection(context).condition(within: flexibleContext(context))
                    out.append("\(i2)        case \(f.tag ?? 0)\(cond == "true" ? "" : " where \(cond)"):")
                    out += decodeField(f, target: "self.\(SwiftNames.bare(SwiftNames.property(f.name)))", context: context,
                                       reader: "field", flexible: "true", indent: i2 + "            ", counter: &counter)
                    out.append("\(i2)            return true")
                }
                out.append("\(i2)        default:")
                out.append("\(i2)            return false")
                out.append("\(i2)        }")
                out.append("\(i2)    }")
                out.append("\(i2)    self.unknownTaggedFields = unknown")
            }
            out.append("\(i2)}")
        }
        out.append("\(indent)}")
        return out
    }

    private func decodeField(_ f: FieldSpec, target: String, context: VersionRange, reader r: String,
                             flexible: String, indent: String, counter: inout Int) -> [String] {
        let optional = isOptional(f, context: context)
        let entity = strongType(f)
        if f.isArray {
            counter += 1
            let arr = "a\(counter)", n = "n\(counter)"
            var out: [String] = []
            out.append("\(indent)if let \(n) = try \(r).readKafkaArrayCount(flexible: \(flexible)) {")
            out.append("\(indent)    var \(arr): [\(elementSwiftType(f))] = []")
            // The count is bounded by the bytes left in the frame, not by what one element takes in
            // memory: reserve a little and let the array grow with elements actually decoded.
            out.append("\(indent)    \(arr).reserveCapacity(Swift.min(\(n), 64))")
            out.append("\(indent)    for _ in 0..<\(n) {")
            out.append("\(indent)        \(arr).append(\(decodeScalarExpr(f.elementType, entity: entity, reader: r, flexible: flexible)))")
            out.append("\(indent)    }")
            out.append("\(indent)    \(target) = \(arr)")
            out.append("\(indent)} else {")
            out.append("\(indent)    \(target) = \(optional ? "nil" : "[]")")
            out.append("\(indent)}")
            return out
        }
        if optional {
            switch f.type {
            case "string":
                let e = "try \(r).readKafkaNullableString(flexible: \(flexible))"
                return ["\(indent)\(target) = \(entity != nil ? "(\(e)).map { \(entity!)($0) }" : e)"]
            case "bytes":
                return ["\(indent)\(target) = try \(r).readKafkaNullableBytes(flexible: \(flexible))"]
            case "records":
                return ["\(indent)\(target) = try \(r).readKafkaRecords(flexible: \(flexible))"]
            default:
                if isStructType(f.type) {
                    return [
                        "\(indent)if try \(r).readKafkaInt8() < 0 {",
                        "\(indent)    \(target) = nil",
                        "\(indent)} else {",
                        "\(indent)    \(target) = try \(SwiftNames.typeName(f.type))(from: &\(r), version: version)",
                        "\(indent)}",
                    ]
                }
                return ["\(indent)\(target) = try \(r).readKafka\(SwiftNames.codecSuffix(f.type))()"]
            }
        }
        return ["\(indent)\(target) = \(decodeScalarExpr(f.type, entity: entity, reader: r, flexible: flexible))"]
    }

    private func decodeScalarExpr(_ t: String, entity: String?, reader r: String, flexible: String) -> String {
        let e: String
        switch t {
        case "string": e = "try \(r).readKafkaString(flexible: \(flexible))"
        case "bytes": e = "try \(r).readKafkaBytes(flexible: \(flexible))"
        case "records": e = "try \(r).readKafkaRecords(flexible: \(flexible))"
        case "bool", "int8", "int16", "uint16", "int32", "uint32", "int64", "float64", "uuid":
            e = "try \(r).readKafka\(SwiftNames.codecSuffix(t))()"
        default:
            return "try \(SwiftNames.typeName(t))(from: &\(r), version: version)"
        }
        if let entity { return "\(entity)(\(e))" }
        return e
    }

    // MARK: - Random samples for the round-trip tests

    func renderSamples() -> String {
        var out: [String] = []
        out.append("// Generated by protocol-codegen from schemas/kafka/\(spec.fileName). Do not edit by hand.")
        out.append("import NIOCore")
        out.append("@testable import KafkaProtocol")
        out.append("")
        out.append("extension \(typeName) {")
        out += sampleFunction(name: typeName, fields: spec.fields, context: spec.validVersions, indent: "    ")
        out.append("}")
        for s in structs {
            out.append("")
            out.append("extension \(typeName).\(s.name) {")
            out += sampleFunction(name: "\(typeName).\(s.name)", fields: s.fields, context: s.versions, indent: "    ")
            out.append("}")
        }
        out.append("")
        return out.joined(separator: "\n")
    }

    private func sampleFunction(name: String, fields: [FieldSpec], context: VersionRange, indent: String) -> [String] {
        var out: [String] = []
        out.append("\(indent)static func randomSample(version: Int16, rng: inout SampleRNG) -> \(name) {")
        out.append("\(indent)    var m = \(name)()")
        let live = fields.filter { !$0.versions.intersection(context).isEmpty }
        for f in live {
            let cond = f.versions.intersection(context).condition(within: context)
            let p = "m.\(SwiftNames.bare(SwiftNames.property(f.name)))"
            let value = sampleExpr(f, context: context, guarded: f.versions.intersection(context))
            if cond == "true" {
                out.append("\(indent)    \(p) = \(value)")
            } else {
                out.append("\(indent)    if \(cond) { \(p) = \(value) }")
            }
        }
        out.append("\(indent)    return m")
        out.append("\(indent)}")
        return out
    }

    private func sampleExpr(_ f: FieldSpec, context: VersionRange, guarded: VersionRange) -> String {
        let optional = isOptional(f, context: context)
        let nullableCond = f.nullableVersions.intersection(f.versions).intersection(guarded).condition(within: guarded)
        let entity = strongType(f)
        var base: String
        if f.isArray {
            base = "rng.array { rng in \(sampleScalar(f.elementType, entity: entity)) }"
        } else {
            base = sampleScalar(f.type, entity: entity)
        }
        if f.type == "records" {
            return "rng.bool() ? nil : \(base)"
        }
        if optional && nullableCond != "false" {
            return "(\(nullableCond) && rng.oneIn(4)) ? nil : \(base)"
        }
        return base
    }

    private func sampleScalar(_ t: String, entity: String?) -> String {
        let e: String
        switch t {
        case "string": e = "rng.string()"
        case "bytes": e = "rng.bytes()"
        case "records": e = "KafkaRecords.bytes(rng.bytes())"
        case "bool": e = "rng.bool()"
        case "int8", "int16", "uint16", "int32", "uint32", "int64":
            e = "rng.integer(\(SwiftNames.primitive(t)!).self)"
        case "float64": e = "rng.double()"
        case "uuid": e = "rng.uuid()"
        default:
            return "\(typeName).\(SwiftNames.typeName(t)).randomSample(version: version, rng: &rng)"
        }
        if let entity { return "\(entity)(\(e))" }
        return e
    }
}
