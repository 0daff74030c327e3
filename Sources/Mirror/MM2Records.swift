import KafkaProtocol
import NIOCore

/// Records in MirrorMaker 2's formats, so tools written for MM2 read what Meridian writes:
/// checkpoints (`<source>.checkpoints.internal`, read by `RemoteClusterUtils.translateOffsets`)
/// and heartbeats (`heartbeats`). Fields use Kafka's protocol types: strings with an int16 length,
/// big-endian integers, and an int16 version before each value.
public enum MM2Records {
    public static func checkpointsTopic(source: String) -> TopicName { TopicName("\(source).checkpoints.internal") }
    public static let heartbeatsTopic: TopicName = "heartbeats"

    /// Key: group, topic (the remote topic in the target), partition. Value: version 0, the
    /// group's offset in the source, the translated offset in the target, metadata.
    public static func checkpoint(group: String, target: TopicPartition, upstreamOffset: Int64, downstreamOffset: Int64,
                                  metadata: String = "") -> (key: ByteBuffer, value: ByteBuffer) {
        var key = ByteBuffer()
        writeString(group, to: &key)
        writeString(target.topic.rawValue, to: &key)
        key.writeInteger(target.partition, endianness: .big)
        var value = ByteBuffer()
        value.writeInteger(Int16(0), endianness: .big)
        value.writeInteger(upstreamOffset, endianness: .big)
        value.writeInteger(downstreamOffset, endianness: .big)
        writeString(metadata, to: &value)
        return (key, value)
    }

    /// Decodes a checkpoint record; nil when it is not one.
    public static func decodeCheckpoint(key: ByteBuffer, value: ByteBuffer) -> (group: String, target: TopicPartition, upstream: Int64, downstream: Int64)? {
        var k = key, v = value
        guard let group = readString(&k), let topic = readString(&k), let partition: Int32 = k.readInteger(endianness: .big),
              let version: Int16 = v.readInteger(endianness: .big), version == 0,
              let up: Int64 = v.readInteger(endianness: .big), let down: Int64 = v.readInteger(endianness: .big) else { return nil }
        return (group, TopicPartition(TopicName(topic), partition), up, down)
    }

    /// Key: source region, target region. Value: version 0, milliseconds since the epoch.
    public static func heartbeat(source: String, target: String, timestamp: Int64) -> (key: ByteBuffer, value: ByteBuffer) {
        var key = ByteBuffer()
        writeString(source, to: &key)
        writeString(target, to: &key)
        var value = ByteBuffer()
        value.writeInteger(Int16(0), endianness: .big)
        value.writeInteger(timestamp, endianness: .big)
        return (key, value)
    }

    public static func decodeHeartbeat(key: ByteBuffer, value: ByteBuffer) -> (source: String, target: String, timestamp: Int64)? {
        var k = key, v = value
        guard let s = readString(&k), let t = readString(&k), let version: Int16 = v.readInteger(endianness: .big), version == 0,
              let ts: Int64 = v.readInteger(endianness: .big) else { return nil }
        return (s, t, ts)
    }

    private static func writeString(_ s: String, to b: inout ByteBuffer) {
        let bytes = Array(s.utf8.prefix(Int(Int16.max)))
        b.writeInteger(Int16(bytes.count), endianness: .big)
        b.writeBytes(bytes)
    }

    private static func readString(_ b: inout ByteBuffer) -> String? {
        guard let n: Int16 = b.readInteger(endianness: .big), n >= 0, let s = b.readString(length: Int(n)) else { return nil }
        return s
    }
}
