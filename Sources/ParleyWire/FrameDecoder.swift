import NIOCore

/// Splits a byte stream into Parley frames: a 4-byte big-endian length N, then N bytes of payload.
///
/// Emits each payload as a `ByteBuffer` (a slice, no copy). A length of 0 or over `maxFrameSize`
/// is a protocol violation: the decoder throws ``FrameError`` and the pipeline closes the connection
/// after telling the peer. A stream that ends mid-frame is dropped silently.
/// Thread safety: owned by one channel's `ByteToMessageHandler`, used on its event loop only.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public let maxFrameSize: Int

    public init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let payload = try Self.next(from: &buffer, maxFrameSize: maxFrameSize) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(payload))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // Complete frames that arrived before EOF are still delivered; a partial one is discarded.
        while let payload = try Self.next(from: &buffer, maxFrameSize: maxFrameSize) {
            context.fireChannelRead(Self.wrapInboundOut(payload))
        }
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }

    /// Takes one frame's payload off the front of `buffer`, or returns nil when it is incomplete.
    public static func next(from buffer: inout ByteBuffer, maxFrameSize: Int) throws(FrameError) -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length > 0 else { throw .emptyFrame }
        guard length <= maxFrameSize else { throw .tooLarge(length: Int(length), limit: maxFrameSize) }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        return buffer.readSlice(length: Int(length))
    }
}

extension FrameDecoder: NIOSingleStepByteToMessageDecoder {
    /// One frame's payload, or nil when the buffer holds no complete frame (single-step form,
    /// for handlers that frame in place with `NIOSingleStepByteToMessageProcessor`).
    public mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        try Self.next(from: &buffer, maxFrameSize: maxFrameSize)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        try Self.next(from: &buffer, maxFrameSize: maxFrameSize)
    }
}

/// A framing violation; the connection is closed after the peer is told.
/// Thread safety: a value type; `Sendable`.
public enum FrameError: Error, Hashable, Sendable {
    case emptyFrame
    case tooLarge(length: Int, limit: Int)
    /// A frame was begun and not finished within the limit (see ``FrameDeadline``).
    case timedOut(limit: TimeAmount)
}

/// Builds frames: the length prefix followed by the payload.
/// Thread safety: stateless.
public enum Frame {
    /// Appends a frame holding `payload` to `buffer`.
    public static func write(_ payload: some Collection<UInt8>, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(payload.count))
        buffer.writeBytes(payload)
    }

    /// A new buffer holding one frame.
    public static func make(_ payload: some Collection<UInt8>, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 4 + payload.count)
        write(payload, into: &buffer)
        return buffer
    }
}
