import NIOCore

/// A tagged field as it appears on the wire: its tag and the raw bytes of its value.
public struct TaggedField: Sendable, Equatable {
    public var tag: UInt32
    public var data: ByteBuffer

    public init(tag: UInt32, data: ByteBuffer) {
        self.tag = tag
        self.data = data
    }
}
