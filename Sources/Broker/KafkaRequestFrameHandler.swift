import KafkaWire
import NIOCore

/// Why a connection is not being read from; reading resumes when no reason is left.
///
/// Shared by the handlers of one channel (all on its event loop): the frame handler pauses for
/// request memory, the connection handler for requests in flight and unsent responses.
final class ReadGate {
    enum Reason: Hashable {
        case requestMemory
        case inFlight
        case unwritable
    }

    private var reasons: Set<Reason> = []
    private weak var channel: Channel?

    init(channel: Channel) {
        self.channel = channel
    }

    var isOpen: Bool { reasons.isEmpty }

    func close(_ reason: Reason) {
        guard reasons.insert(reason).inserted, reasons.count == 1 else { return }
        channel?.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
    }

    func open(_ reason: Reason) {
        guard reasons.remove(reason) != nil, reasons.isEmpty, let channel else { return }
        channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        channel.read()
    }
}

/// Cuts a connection's byte stream into request frames (int32 size, then that many bytes).
///
/// Nothing is reserved from the announced size: bytes are buffered as they arrive. Before a frame's
/// body is buffered its size is reserved from the broker-wide ``RequestMemoryPool``; when the pool
/// cannot take it the connection stops reading until memory frees up. Every frame passed on holds a
/// reservation of exactly its payload size, which the connection handler releases once the request
/// is answered. A size below 8 or above `socket.request.max.bytes` closes the connection at once.
final class KafkaRequestFrameHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let maximumFrameSize: Int
    private let pool: RequestMemoryPool
    private let gate: ReadGate
    private var buffer: ByteBuffer?
    /// Size reserved for the frame being received, if its prefix has arrived and was admitted.
    private var admitted: Int?
    private var waitID: UInt64?
    private var failed = false

    init(maximumFrameSize: Int, pool: RequestMemoryPool, gate: ReadGate) {
        self.maximumFrameSize = maximumFrameSize
        self.pool = pool
        self.gate = gate
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var incoming = unwrapInboundIn(data)
        if buffer == nil || buffer!.readableBytes == 0 {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        process(context)
    }

    private func process(_ context: ChannelHandlerContext) {
        while !failed, var b = buffer, let size = b.getInteger(at: b.readerIndex, endianness: .big, as: Int32.self) {
            guard size >= 8, Int(size) <= maximumFrameSize else {
                failed = true
                context.fireErrorCaught(KafkaFrameError.invalidFrameSize(Int(size), maximum: maximumFrameSize))
                return
            }
            let n = Int(size)
            if admitted == nil {
                guard pool.tryReserve(n) else {
                    waitForMemory(context)
                    return
                }
                admitted = n
                // The budget now holds this request: room for it can be made at once, so the
                // body is not copied again each time the buffer grows.
                if b.readableBytes < 4 + n {
                    b.reserveCapacity(minimumWritableBytes: 4 + n - b.readableBytes)
                    buffer = b
                }
            }
            guard b.readableBytes >= 4 + n else { return }
            b.moveReaderIndex(forwardBy: 4)
            let frame = b.readSlice(length: n)!
            // What follows the frame starts a buffer of its own: appending to the frame's storage
            // while the frame is still being served would copy it.
            buffer = b.readableBytes == 0 ? nil : ByteBuffer(buffer: b)
            admitted = nil
            context.fireChannelRead(wrapInboundOut(frame))
        }
        if buffer?.readableBytes == 0 { buffer = nil }
    }

    private func waitForMemory(_ context: ChannelHandlerContext) {
        gate.close(.requestMemory)
        guard waitID == nil else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let loop = context.eventLoop
        waitID = pool.waitForRelease {
            loop.execute {
                let (handler, ctx) = loopBound.value
                handler.waitID = nil
                handler.gate.open(.requestMemory)
                handler.process(ctx)
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let waitID { pool.cancelWait(waitID) }
        if let admitted { pool.release(admitted) }
        admitted = nil
        buffer = nil
    }
}
