import Foundation
import KafkaProtocol
import KafkaWire
import NIOCore
import NIOEmbedded
import Testing

/// Requests captured once from kcat (librdkafka), confluent-kafka and kafka-python by
/// `scripts/capture-golden-requests.py`: each goes through the frame decoder, its header and body
/// decode with nothing left over, and re-encoding gives the same bytes.
@Suite("Golden requests from real clients", .timeLimit(.minutes(1)))
struct GoldenRequestTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    static let types: [ApiKey: any KafkaRequestMessage.Type] = Dictionary(uniqueKeysWithValues: ([
        ProduceRequest.self, FetchRequest.self, ListOffsetsRequest.self, MetadataRequest.self, OffsetCommitRequest.self,
        OffsetFetchRequest.self, FindCoordinatorRequest.self, JoinGroupRequest.self, HeartbeatRequest.self,
        LeaveGroupRequest.self, SyncGroupRequest.self, DescribeGroupsRequest.self, ListGroupsRequest.self,
        ApiVersionsRequest.self, CreateTopicsRequest.self, InitProducerIDRequest.self, DescribeConfigsRequest.self,
        DescribeClusterRequest.self,
    ] as [any KafkaRequestMessage.Type]).map { ($0.apiKey, $0) })

    static func files() throws -> [URL] {
        let fm = FileManager.default
        return try fm.contentsOfDirectory(atPath: directory.path).sorted().flatMap { client in
            try fm.contentsOfDirectory(atPath: directory.appendingPathComponent(client).path).sorted()
                .filter { $0.hasSuffix(".bin") }
                .map { directory.appendingPathComponent(client).appendingPathComponent($0) }
        }
    }

    static func roundTrip<R: KafkaRequestMessage>(_: R.Type, version: Int16, body: ByteBuffer) throws -> (ByteBuffer, Int) {
        var b = body
        let request = try R(from: &b, version: version)
        var w = KafkaWriter()
        try request.encode(to: &w, version: version)
        return (w.buffer, b.readableBytes)
    }

    @Test func everyCapturedRequestDecodesWholeAndReencodesToTheSameBytes() throws {
        let files = try Self.files()
        let clients = Set(files.map { $0.deletingLastPathComponent().lastPathComponent })
        #expect(clients == ["kcat", "confluent-kafka", "kafka-python"])
        #expect(files.count >= 30)
        for file in files {
            let name = "\(file.deletingLastPathComponent().lastPathComponent)/\(file.lastPathComponent)"
            let channel = EmbeddedChannel(handler: ByteToMessageHandler(KafkaFrameDecoder()))
            try channel.writeInbound(ByteBuffer(bytes: try Data(contentsOf: file)))
            guard var frame = try channel.readInbound(as: ByteBuffer.self) else {
                Issue.record("\(name): the frame decoder produced no frame")
                continue
            }
            #expect(try channel.readInbound(as: ByteBuffer.self) == nil, "\(name): one frame per file")
            let header = try RequestHeader(from: &frame) { key, version in Self.types[key]?.requestHeaderVersion(version) ?? 1 }
            guard let type = Self.types[header.apiKey] else {
                Issue.record("\(name): no generated type for \(header.apiKey)")
                continue
            }
            #expect(file.lastPathComponent == "\(header.apiKey.name)-v\(header.apiVersion).bin", "\(name)")
            #expect(header.clientID?.isEmpty == false, "\(name): clients name themselves")
            let body = frame
            let (reencoded, left) = try Self.roundTrip(type, version: header.apiVersion, body: body)
            #expect(left == 0, "\(name): \(left) bytes left after the body")
            #expect(reencoded == body, "\(name): re-encoding changed the bytes")
            _ = try channel.finish()
        }
    }
}
