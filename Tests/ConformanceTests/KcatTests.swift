import Foundation
import KafkaProtocol
import NIOCore
import Testing
import TestSupport

/// kcat (librdkafka 2.0.2) against a broker process: metadata, keyed produce, consume, gzip, TLS.
@Suite("kcat", .serialized, .enabled(if: ExternalTools.shouldRun(ExternalTools.kcat)), .timeLimit(.minutes(5)))
struct KcatTests {
    func kcat(_ args: [String], input: String? = nil, timeout: Double = 60) async throws -> ProcessResult {
        let bin = try ExternalTools.require(ExternalTools.kcat, "kcat")
        return try await runProcess(bin, args, input: input.map { Data($0.utf8) }, timeout: timeout)
    }

    @Test func metadataListsBrokerAndTopics() async throws {
        let broker = try await BrokerProcess(arguments: ["--default-partitions", "2"])
        defer { broker.terminate(); broker.removeData() }
        _ = try await kcat(["-b", broker.bootstrap, "-P", "-t", "meta-topic"], input: "x\n")
        let r = try await kcat(["-b", broker.bootstrap, "-L"])
        #expect(r.status == 0, "kcat -L failed: \(r.stderr)")
        #expect(r.stdout.contains("1 brokers:"))
        #expect(r.stdout.contains("broker 1 at \(broker.bootstrap) (controller)"))
        #expect(r.stdout.contains("topic \"meta-topic\" with 2 partitions"))
    }

    @Test func tenThousandKeyedMessagesReadBackInPartitionOrder() async throws {
        let broker = try await BrokerProcess(arguments: ["--default-partitions", "3"])
        defer { broker.terminate(); broker.removeData() }
        let lines = (0..<10_000).map { "key\($0 % 97):value-\($0)" }
        let p = try await kcat(["-b", broker.bootstrap, "-P", "-t", "keyed", "-K:", "-X", "linger.ms=5"], input: lines.joined(separator: "\n") + "\n")
        #expect(p.status == 0, "produce failed: \(p.stderr)")
        let c = try await kcat(["-b", broker.bootstrap, "-C", "-t", "keyed", "-o", "beginning", "-e", "-q", "-f", "%p|%o|%k|%s\\n"])
        #expect(c.status == 0, "consume failed: \(c.stderr)")
        let rows = c.stdout.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
        #expect(rows.count == 10_000)
        // Exactly the produced set, each key in one partition, offsets dense, and per-partition order
        // equal to production order.
        #expect(Set(rows.map { "\($0[2]):\($0[3])" }) == Set(lines))
        var byPartition: [String: [[String]]] = [:]
        for r in rows { byPartition[r[0], default: []].append(r) }
        #expect(byPartition.count == 3, "all three partitions used")
        var keyPartition: [String: String] = [:]
        for (partition, rs) in byPartition {
            #expect(rs.map { Int($0[1])! } == Array(0..<rs.count), "offsets of partition \(partition) are dense from 0")
            let seq = rs.map { Int($0[3].dropFirst("value-".count))! }
            #expect(seq == seq.sorted(), "partition \(partition) keeps production order")
            for r in rs {
                if let other = keyPartition[r[2]] { #expect(other == partition, "key \(r[2]) in two partitions") }
                keyPartition[r[2]] = partition
            }
        }
    }

    @Test func gzipCompressedProduceReadsBackIdentical() async throws {
        let broker = try await BrokerProcess()
        defer { broker.terminate(); broker.removeData() }
        let lines = (0..<2_000).map { "gz-\($0)-" + String(repeating: "abc", count: $0 % 50) }
        let p = try await kcat(["-b", broker.bootstrap, "-P", "-t", "gz", "-z", "gzip"], input: lines.joined(separator: "\n") + "\n")
        #expect(p.status == 0, "\(p.stderr)")
        #expect(!p.stderr.contains("not compressing"), "librdkafka fell back to uncompressed: \(p.stderr)")
        let c = try await kcat(["-b", broker.bootstrap, "-C", "-t", "gz", "-o", "beginning", "-e", "-q"])
        #expect(c.stdout.split(separator: "\n").map(String.init) == lines)
        // The batches are stored as the producer compressed them (codec bits = gzip). librdkafka
        // sends a batch uncompressed when compressing would not make it smaller, which happens to
        // a batch of one or two short lines (a loaded machine flushes such tiny batches), so only
        // batches of many records must be gzip.
        let seg = broker.dataDir + "/gz-0/00000000000000000000.log"
        let batches = RecordBatch.batches(in: ByteBuffer(bytes: try Data(contentsOf: URL(fileURLWithPath: seg))))
        #expect(batches.contains { $0.header.compression == .gzip }, "gzip batches are stored as gzip")
        for (h, _) in batches where h.recordsCount >= 20 {
            #expect(h.compression == .gzip, "a batch of \(h.recordsCount) records at offset \(h.baseOffset) is \(h.compression)")
        }
    }

    @Test func tlsWithTheDeployCA() async throws {
        let certs = try await makeTestCertificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let broker = try await BrokerProcess(
            listeners: ["PLAINTEXT://127.0.0.1:0", "SSL://127.0.0.1:0"],
            arguments: ["--tls-cert", "\(certs)/broker.pem", "--tls-key", "\(certs)/broker.key"])
        defer { broker.terminate(); broker.removeData() }
        let ssl = try #require(broker.address(of: "SSL"))
        let common = ["-b", ssl, "-X", "security.protocol=ssl", "-X", "ssl.ca.location=\(certs)/ca.pem"]
        let p = try await kcat(common + ["-P", "-t", "secure"], input: "one\ntwo\n")
        #expect(p.status == 0, "\(p.stderr)")
        let c = try await kcat(common + ["-C", "-t", "secure", "-o", "beginning", "-e", "-q"])
        #expect(c.stdout == "one\ntwo\n", "\(c.stderr)")
        let md = try await kcat(common + ["-L"])
        #expect(md.stdout.contains("broker 1 at \(ssl)"), "metadata advertises the SSL listener to SSL clients")
    }

    @Test func mutualTLSRefusesClientsWithoutCertificates() async throws {
        let certs = try await makeTestCertificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let broker = try await BrokerProcess(
            listeners: ["SSL://127.0.0.1:0"],
            arguments: ["--tls-cert", "\(certs)/broker.pem", "--tls-key", "\(certs)/broker.key",
                        "--tls-ca", "\(certs)/ca.pem", "--tls-client-auth", "required"])
        defer { broker.terminate(); broker.removeData() }
        let common = ["-b", broker.bootstrap, "-X", "security.protocol=ssl", "-X", "ssl.ca.location=\(certs)/ca.pem"]
        let refused = try await kcat(common + ["-L", "-m", "5"], timeout: 30)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("certificate required") || refused.stderr.contains("handshake"), "\(refused.stderr)")
        let withCert = common + ["-X", "ssl.certificate.location=\(certs)/client.pem", "-X", "ssl.key.location=\(certs)/client.key"]
        let p = try await kcat(withCert + ["-P", "-t", "mtls"], input: "trusted\n")
        #expect(p.status == 0, "\(p.stderr)")
        let c = try await kcat(withCert + ["-C", "-t", "mtls", "-o", "beginning", "-e", "-q"])
        #expect(c.stdout == "trusted\n", "\(c.stderr)")
    }
}
