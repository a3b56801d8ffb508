import NIOCore
import ParleyCore
import ParleyWire

/// The native protocol's ``SessionSink``: frames are copied into one chunk of at most
/// ``chunkSize`` bytes (a full chunk is written and a new one started), so a batch costs one
/// write per connection instead of one per frame.
/// Thread safety: `Sendable`; the chunk lives in a `NIOLoopBoundBox`, touched on the channel's loop only.
final class NativeSink: SessionSink {
    let channel: any Channel
    var eventLoop: any EventLoop { channel.eventLoop }
    var format: WireFormat { .native }
    private let chunk: NIOLoopBoundBox<ByteBuffer?>

    init(channel: any Channel) {
        self.channel = channel
        self.chunk = NIOLoopBoundBox(nil, eventLoop: channel.eventLoop)
    }

    /// Largest coalesced write. Chunks this small stay on malloc's heap (big ones are mmapped,
    /// which costs page faults on every batch).
    static let chunkSize = 32 * 1024

    func write(_ bytes: ByteBuffer) {
        let full: ByteBuffer? = chunk.withValue { chunk in
            if chunk != nil, chunk!.readableBytes + bytes.readableBytes <= Self.chunkSize {
                chunk!.writeImmutableBuffer(bytes)
                return nil
            }
            let full = chunk
            var fresh = channel.allocator.buffer(capacity: max(min(bytes.readableBytes * 8, Self.chunkSize), bytes.readableBytes))
            fresh.writeImmutableBuffer(bytes)
            chunk = fresh
            return full
        }
        if let full { channel.write(full, promise: nil) }
    }

    func flush() {
        let pending = chunk.withValue { chunk in
            defer { chunk = nil }
            return chunk
        }
        if let pending { channel.writeAndFlush(pending, promise: nil) } else { channel.flush() }
    }

    var isWritable: Bool { channel.isWritable }

    func setReading(_ reading: Bool) {
        channel.setOption(ChannelOptions.autoRead, value: reading).whenFailure { _ in }
        if reading { channel.read() }
    }

    func close(with error: ParleyError) {
        NativeConnection.closeWithError(channel, error)
    }
}

/// The native protocol's ``EventEncoder``: length-prefixed JSON frames (docs/PROTOCOL.md).
/// Thread safety: stateless.
struct NativeEncoder: EventEncoder {
    func encode(_ event: Event, allocator: ByteBufferAllocator) -> ByteBuffer {
        switch event {
        case .message(let message): ServerFrame.messageFrame(message, allocator: allocator)
        case .replayed(let message): ServerFrame.messageFrame(message, replay: true, allocator: allocator)
        default: ServerFrame(event: event).frame(allocator: allocator)
        }
    }

    func encodeAcknowledgement(_ message: StoredMessage, id: RequestID?, allocator: ByteBufferAllocator) -> ByteBuffer {
        ServerFrame.messageFrame(message, id: id, allocator: allocator)
    }

    func encodeError(_ error: ParleyError, id: RequestID?, allocator: ByteBufferAllocator) -> ByteBuffer {
        ServerFrame.error(error, id: id).frame(allocator: allocator)
    }
}
