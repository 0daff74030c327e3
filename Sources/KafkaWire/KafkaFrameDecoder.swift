import KafkaProtocol
import NIOCore

/// Splits a byte stream into Kafka frames: a big-endian int32 size followed by that many bytes.
///
/// Emits each frame's payload (without the size) as a `ByteBuffer` slice. A size below
/// `minimumFrameSize` or above `maximumFrameSize` (Kafka's `socket.request.max.bytes`, 100 MiB by
/// default) is a protocol violation: the decoder throws ``KafkaFrameError`` and the pipeline closes
/// the connection, before any of the oversized payload is buffered.
public struct KafkaFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public static let defaultMaximumFrameSize = 100 * 1024 * 1024

    public let maximumFrameSize: Int
    public let minimumFrameSize: Int

    /// - Parameters:
    ///   - maximumFrameSize: largest accepted payload.
    ///   - minimumFrameSize: smallest accepted payload; 8 for requests (api key, version, correlation
    ///     id), 4 for responses (correlation id).
    public init(maximumFrameSize: Int = KafkaFrameDecoder.defaultMaximumFrameSize, minimumFrameSize: Int = 8) {
        self.maximumFrameSize = maximumFrameSize
        self.minimumFrameSize = minimumFrameSize
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let size = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: Int32.self) else {
            return .needMoreData
        }
        guard size >= minimumFrameSize, Int(size) <= maximumFrameSize else {
            throw KafkaFrameError.invalidFrameSize(Int(size), maximum: maximumFrameSize)
        }
        guard buffer.readableBytes >= 4 + Int(size) else {
            // Reserve once so a large frame does not grow the buffer by repeated doubling.
            buffer.reserveCapacity(minimumWritableBytes: 4 + Int(size) - buffer.readableBytes)
            return .needMoreData
        }
        buffer.moveReaderIndex(forwardBy: 4)
        context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: Int(size))!))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

public enum KafkaFrameError: Error, Equatable, CustomStringConvertible {
    case invalidFrameSize(Int, maximum: Int)

    public var description: String {
        switch self {
        case .invalidFrameSize(let n, let max):
            return "frame size \(n) is outside the accepted range (maximum \(max) bytes, socket.request.max.bytes)"
        }
    }
}

/// Helpers to lay out a size-prefixed frame in a ``KafkaWriter``.
public enum KafkaFrame {
    /// Starts a frame: reserves the 4-byte size. Returns the index to pass to ``finish(_:sizeAt:)``.
    public static func begin(_ w: inout KafkaWriter) -> Int {
        let at = w.buffer.writerIndex
        w.buffer.writeInteger(Int32(0))
        return at
    }

    /// Fills in the size of the frame begun at `sizeAt`, counting spliced file bytes.
    public static func finish(_ w: inout KafkaWriter, sizeAt: Int) {
        let total = w.totalBytes - (sizeAt - w.buffer.readerIndex) - 4
        w.buffer.setInteger(Int32(total), at: sizeAt, endianness: .big)
    }
}
