import Foundation
import Topology

/// A flow's include/exclude patterns, compiled once. A name is selected when some include pattern
/// matches all of it and no exclude pattern does (patterns are anchored, as MirrorMaker 2's are).
public struct NameFilter: @unchecked Sendable {
    // NSRegularExpression is immutable and documented as safe to share between threads.
    private let include: [NSRegularExpression]
    private let exclude: [NSRegularExpression]

    public init(_ selection: Topology.Flow.Selection) throws {
        func compile(_ p: String) throws -> NSRegularExpression {
            do { return try NSRegularExpression(pattern: "^(?:\(p))$") } catch {
                throw TopologyError("'\(p)' is not a valid regular expression")
            }
        }
        include = try selection.include.map(compile)
        exclude = try selection.exclude.map(compile)
    }

    public func matches(_ name: String) -> Bool {
        let range = NSRange(name.startIndex..., in: name)
        func hit(_ r: NSRegularExpression) -> Bool { r.firstMatch(in: name, range: range) != nil }
        return include.contains(where: hit) && !exclude.contains(where: hit)
    }
}
