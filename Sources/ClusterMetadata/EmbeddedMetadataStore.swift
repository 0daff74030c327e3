import Foundation

/// Metadata kept as small files in the broker's data directory.
///
/// - `meta.properties`: `cluster.id` and `node.id` (refuses to start a different broker id on the same data).
/// - `topics.json`: every topic record, written with write-to-temp + fsync + rename so a crash
///   leaves either the old or the new file.
/// - `producer-id-block`: the next unreserved producer id.
///
/// Thread-safe: every call serialises on an internal lock.
public final class EmbeddedMetadataStore: MetadataStore, @unchecked Sendable {
    public let directory: String
    private let lock = NSLock()
    private let cluster: String

    public enum StoreError: Error, CustomStringConvertible {
        case brokerIDMismatch(dataDir: String, stored: Int32, requested: Int32)
        case unreadable(String, String)

        public var description: String {
            switch self {
            case .brokerIDMismatch(let dir, let stored, let requested):
                return "data directory \(dir) belongs to broker \(stored), not \(requested); use --broker-id \(stored) or another --data-dir"
            case .unreadable(let file, let why):
                return "cannot read \(file): \(why); restore it from a backup or move the data directory aside"
            }
        }
    }

    public init(directory: String, brokerID: Int32) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let metaPath = "\(directory)/meta.properties"
        if let text = try? String(contentsOfFile: metaPath, encoding: .utf8) {
            var props: [String: String] = [:]
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
                if parts.count == 2 { props[parts[0]] = parts[1] }
            }
            if let stored = props["node.id"].flatMap(Int32.init), stored != brokerID {
                throw StoreError.brokerIDMismatch(dataDir: directory, stored: stored, requested: brokerID)
            }
            guard let c = props["cluster.id"] else { throw StoreError.unreadable(metaPath, "no cluster.id") }
            cluster = c
        } else {
            cluster = Self.newClusterID()
            let text = "# Written by meridian on first start. Do not edit.\nversion=1\ncluster.id=\(cluster)\nnode.id=\(brokerID)\n"
            try Self.atomicWrite(Data(text.utf8), to: metaPath)
        }
    }

    /// 22-character URL-safe base64 of 16 random bytes, like Kafka cluster ids.
    static func newClusterID() -> String {
        var g = SystemRandomNumberGenerator()
        let bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }
        return Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public func clusterID() throws -> String { cluster }

    public func loadTopics() throws -> [TopicRecord] {
        lock.lock()
        defer { lock.unlock() }
        let path = "\(directory)/topics.json"
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        do {
            return try JSONDecoder().decode([TopicRecord].self, from: data)
        } catch {
            throw StoreError.unreadable(path, "\(error)")
        }
    }

    public func saveTopics(_ topics: [TopicRecord]) throws {
        lock.lock()
        defer { lock.unlock() }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Self.atomicWrite(try enc.encode(topics.sorted { $0.name < $1.name }), to: "\(directory)/topics.json")
    }

    public func allocateProducerIDs(count: Int64) throws -> Int64 {
        lock.lock()
        defer { lock.unlock() }
        let path = "\(directory)/producer-id-block"
        let current = (try? String(contentsOfFile: path, encoding: .utf8))
            .flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        try Self.atomicWrite(Data("\(current + count)\n".utf8), to: path)
        return current
    }

    static func atomicWrite(_ data: Data, to path: String) throws {
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: data) else {
            throw StoreError.unreadable(tmp, "cannot create")
        }
        let fd = open(tmp, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(tmp, path) == 0 else { throw StoreError.unreadable(path, String(cString: strerror(errno))) }
        let dfd = open((path as NSString).deletingLastPathComponent, O_RDONLY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }
}
