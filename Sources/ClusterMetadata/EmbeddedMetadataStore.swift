import FileLayer
import Foundation

/// Metadata kept as small files in the broker's data directory.
///
/// - `meta.properties`: `cluster.id` and `node.id` (refuses to start a different broker id on the
///   same data). Its presence is the directory's identity: it is written last when a directory is
///   first initialised, so a directory that has it also has the files below.
/// - `topics.json`: every topic record.
/// - `producer-id-block`: the next unreserved producer id.
///
/// Every file is replaced by write-temp, fsync, rename, fsync of the directory, so a crash leaves
/// either the old or the new file. A missing or damaged file in a directory with an identity stops
/// the broker with a message saying what to do: starting with "no topics" or "producer id 0" would
/// orphan every topic's data or hand out producer ids already in use.
///
/// Thread-safe: every call serialises on an internal lock.
public final class EmbeddedMetadataStore: MetadataStore, @unchecked Sendable {
    public let directory: String
    private let fs: any FileSystem
    private let lock = NSLock()
    private let cluster: String
    /// `version` in meta.properties: 1 for directories made before the producer-id block was
    /// written at initialisation (a missing block there means none was ever reserved).
    private let formatVersion: Int

    static let currentFormatVersion = 2

    public enum StoreError: Error, CustomStringConvertible {
        case brokerIDMismatch(dataDir: String, stored: Int32, requested: Int32)
        case unreadable(String, String)
        case missing(String, String)

        public var description: String {
            switch self {
            case .brokerIDMismatch(let dir, let stored, let requested):
                return "data directory \(dir) belongs to broker \(stored), not \(requested); use --broker-id \(stored) or another --data-dir"
            case .unreadable(let file, let why):
                return "cannot read \(file): \(why); restore it from a backup or move the data directory aside"
            case .missing(let file, let why):
                return "\(file) is missing: \(why)"
            }
        }
    }

    private var metaPath: String { "\(directory)/meta.properties" }
    private var topicsPath: String { "\(directory)/topics.json" }
    private var producerIDPath: String { "\(directory)/producer-id-block" }

    public init(fs: any FileSystem = PosixFileSystem(), directory: String, brokerID: Int32) throws {
        self.fs = fs
        self.directory = directory
        try fs.createDirectory(directory)
        let metaPath = "\(directory)/meta.properties"
        let topicsPath = "\(directory)/topics.json"
        if let text = try fs.readText(metaPath) {
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
            formatVersion = props["version"].flatMap(Int.init) ?? 1
            _ = try readProducerIDBlock()
            guard fs.exists(topicsPath) else {
                throw StoreError.missing(topicsPath, """
                    the data directory \(directory) belongs to cluster \(c), but its topic list is gone. \
                    The broker will not start with no topics: that would orphan the data of every topic. \
                    Restore topics.json from a backup, or move the data directory aside to start an empty broker
                    """)
            }
        } else {
            // A topic list with topics but no identity: the identity was lost, not never written
            // (an initialisation interrupted before meta.properties leaves an empty list behind).
            if let bytes = try fs.readFile(topicsPath), !bytes.isEmpty,
               (try? JSONDecoder().decode([TopicRecord].self, from: Data(bytes)))?.isEmpty != true {
                throw StoreError.missing(metaPath, """
                    \(directory) holds a topic list but no identity (cluster and node id). \
                    Restore meta.properties from a backup, or move the data directory aside to start an empty broker
                    """)
            }
            cluster = Self.newClusterID()
            formatVersion = Self.currentFormatVersion
            // The identity goes last: a crash before it leaves a directory that initialises again.
            try fs.writeAtomically("[]\n", to: topicsPath)
            try fs.writeAtomically("0\n", to: "\(directory)/producer-id-block")
            let text = """
                # Written by meridian on first start. Do not edit.
                version=\(Self.currentFormatVersion)
                cluster.id=\(cluster)
                node.id=\(brokerID)

                """
            try fs.writeAtomically(text, to: metaPath)
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
        guard let bytes = try fs.readFile(topicsPath) else {
            throw StoreError.missing(topicsPath, "the topic list of \(directory) disappeared while the broker ran")
        }
        do {
            return try JSONDecoder().decode([TopicRecord].self, from: Data(bytes))
        } catch {
            throw StoreError.unreadable(topicsPath, "\(error)")
        }
    }

    public func saveTopics(_ topics: [TopicRecord]) throws {
        lock.lock()
        defer { lock.unlock() }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try fs.writeAtomically(Array(try enc.encode(topics.sorted { $0.name < $1.name })), to: topicsPath)
    }

    public func allocateProducerIDs(count: Int64) throws -> Int64 {
        lock.lock()
        defer { lock.unlock() }
        let current = try readProducerIDBlock()
        try fs.writeAtomically("\(current + count)\n", to: producerIDPath)
        return current
    }

    /// The next free producer id as stored; checked at startup so a damaged file stops the broker
    /// before any client is served.
    private func readProducerIDBlock() throws -> Int64 {
        if let text = try fs.readText(producerIDPath) {
            guard let v = Int64(text.trimmingCharacters(in: .whitespacesAndNewlines)), v >= 0, v <= Int64.max / 2 else {
                throw StoreError.unreadable(producerIDPath, """
                    it should hold one non-negative number, the next free producer id; producer ids cannot be \
                    handed out safely without it (write a number larger than any id issued before)
                    """)
            }
            return v
        } else if formatVersion >= 2 {
            throw StoreError.missing(producerIDPath, """
                producer ids cannot be handed out safely without it; write a number larger than any id \
                issued before into it (e.g. the largest producer id in the logs plus 1000)
                """)
        }
        return 0
    }
}
