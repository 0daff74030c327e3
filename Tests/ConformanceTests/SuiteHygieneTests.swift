import Foundation
import Testing
import TestSupport

/// Rules the suite keeps so that it passes every time: every test runs under a time limit (a hang
/// fails with the test's name), given by its suite.
@Suite("Suite hygiene", .timeLimit(.minutes(1)))
struct SuiteHygieneTests {
    @Test func everyTestRunsUnderATimeLimit() async throws {
        let tests = ExternalTools.packageRoot.appendingPathComponent("Tests")
        let files = FileManager.default.enumerator(atPath: tests.path)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
        #expect(files.count > 10)
        for file in files {
            let text = try String(contentsOf: tests.appendingPathComponent(file), encoding: .utf8)
            let lines = text.split(separator: "\n")
            let suites = lines.filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix("@Suite") }
            for s in suites {
                #expect(s.contains(".timeLimit("), "\(file): \(s.trimmingCharacters(in: .whitespaces)) has no .timeLimit")
            }
            if lines.contains(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("@Test") }) {
                #expect(!suites.isEmpty, "\(file) has tests outside a @Suite with a time limit")
            }
        }
    }

    /// Foundation's `Process.run()` on Linux can crash the process that calls it (it over-reads
    /// `/proc/self/fd` entries), and its children outlive it: every child, in the product and in
    /// the tests, is a `ChildProcess`.
    @Test func noChildIsStartedWithFoundationsProcess() throws {
        let root = ExternalTools.packageRoot
        var offenders: [String] = []
        for dir in ["Sources", "Tests"] {
            let base = root.appendingPathComponent(dir)
            for file in FileManager.default.enumerator(atPath: base.path)?.compactMap({ $0 as? String }) ?? [] where file.hasSuffix(".swift") {
                let text = try String(contentsOf: base.appendingPathComponent(file), encoding: .utf8)
                for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
                where line.contains(#/(^|[^A-Za-z0-9_])Process\(\)/#) && !line.trimmingCharacters(in: .whitespaces).hasPrefix("//") {
                    offenders.append("\(dir)/\(file):\(n + 1): \(line.trimmingCharacters(in: .whitespaces))")
                }
            }
        }
        #expect(offenders.isEmpty, "use ChildProcess (module Spawn): \(offenders.joined(separator: "\n"))")
    }
}
