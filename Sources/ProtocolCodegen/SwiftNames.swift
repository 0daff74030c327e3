/// Turns schema names into Swift identifiers and schema types into Swift types.
enum SwiftNames {
    static let keywords: Set<String> = [
        "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "init",
        "inout", "internal", "let", "open", "operator", "private", "protocol", "public", "rethrows", "static",
        "struct", "subscript", "typealias", "var", "break", "case", "continue", "default", "defer", "do",
        "else", "fallthrough", "for", "guard", "if", "in", "repeat", "return", "switch", "where", "while",
        "as", "catch", "false", "is", "nil", "super", "self", "Self", "throw", "throws", "true", "try", "Type",
    ]

    /// `ClusterId` → `clusterID`, `TopicIds` → `topicIDs`, `IsInternal` → `isInternal`.
    static func property(_ schemaName: String) -> String {
        var s = acronyms(schemaName)
        // Lower-case the leading capital run, keeping the last capital when it starts a word.
        let chars = Array(s)
        var i = 0
        while i < chars.count, chars[i].isUppercase { i += 1 }
        if i == 0 {
            // already lower
        } else if i == 1 || i == chars.count {
            s = String(chars[..<i]).lowercased() + String(chars[i...])
        } else {
            s = String(chars[..<(i - 1)]).lowercased() + String(chars[(i - 1)...])
        }
        return keywords.contains(s) ? "`\(s)`" : s
    }

    /// Identifier without backticks, for building other names.
    static func bare(_ property: String) -> String {
        property.replacingOccurrences(of: "`", with: "")
    }

    static func typeName(_ schemaName: String) -> String {
        acronyms(schemaName)
    }

    /// Replace the `Id`/`Ids` word at a word boundary by `ID`/`IDs`.
    private static func acronyms(_ s: String) -> String {
        let chars = Array(s)
        var out = ""
        var i = 0
        while i < chars.count {
            if chars[i] == "I", i + 1 < chars.count, chars[i + 1] == "d" {
                let next = i + 2 < chars.count ? chars[i + 2] : nil
                if next == nil || next!.isUppercase {
                    out += "ID"
                    i += 2
                    continue
                }
                if next == "s", i + 3 >= chars.count || chars[i + 3].isUppercase {
                    out += "IDs"
                    i += 3
                    continue
                }
            }
            out.append(chars[i])
            i += 1
        }
        return out
    }

    /// The strong Swift type for an `entityType`, if the project has one.
    static func entity(_ entityType: String?, schemaType: String) -> String? {
        switch (entityType, schemaType) {
        case ("topicName", "string"): return "TopicName"
        case ("groupId", "string"): return "GroupID"
        case ("brokerId", "int32"): return "BrokerID"
        case ("producerId", "int64"): return "ProducerID"
        default: return nil
        }
    }

    static func primitive(_ t: String) -> String? {
        switch t {
        case "bool": return "Bool"
        case "int8": return "Int8"
        case "int16": return "Int16"
        case "uint16": return "UInt16"
        case "int32": return "Int32"
        case "uint32": return "UInt32"
        case "int64": return "Int64"
        case "float64": return "Double"
        case "uuid": return "KafkaUUID"
        case "string": return "String"
        case "bytes": return "ByteBuffer"
        case "records": return "KafkaRecords"
        default: return nil
        }
    }

    /// The suffix of the `readKafkaX` / `writeX` primitive helpers.
    static func codecSuffix(_ t: String) -> String {
        switch t {
        case "bool": return "Bool"
        case "int8": return "Int8"
        case "int16": return "Int16"
        case "uint16": return "UInt16"
        case "int32": return "Int32"
        case "uint32": return "UInt32"
        case "int64": return "Int64"
        case "float64": return "Float64"
        case "uuid": return "UUID"
        default: return t
        }
    }
}
