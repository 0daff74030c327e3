import Foundation
import ProtocolCodegen

// Regenerates Sources/KafkaProtocol/Generated and Tests/KafkaProtocolTests/Generated from
// schemas/kafka. Run from the package root: `swift run protocol-codegen`.
// Options: --schemas DIR  --sources DIR  --tests DIR  (defaults are the package layout).
var schemas = "schemas/kafka"
var sources = "Sources/KafkaProtocol/Generated"
var tests = "Tests/KafkaProtocolTests/Generated"
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--schemas": schemas = args.popFirst() ?? schemas
    case "--sources": sources = args.popFirst() ?? sources
    case "--tests": tests = args.popFirst() ?? tests
    case "-h", "--help":
        print("usage: protocol-codegen [--schemas DIR] [--sources DIR] [--tests DIR]")
        print("Reads the Kafka message schemas and writes one Swift codec file per message.")
        exit(0)
    default:
        FileHandle.standardError.write("protocol-codegen: unknown argument \(a); see --help\n".data(using: .utf8)!)
        exit(2)
    }
}
do {
    let out = try ProtocolCodegen.generate(schemaDirectory: URL(fileURLWithPath: schemas))
    try ProtocolCodegen.write(out, sourcesDirectory: URL(fileURLWithPath: sources), testsDirectory: URL(fileURLWithPath: tests))
    print("protocol-codegen: wrote \(out.sources.count) source files to \(sources) and \(out.testSources.count) to \(tests)")
} catch {
    FileHandle.standardError.write("protocol-codegen: \(error)\n".data(using: .utf8)!)
    exit(1)
}
