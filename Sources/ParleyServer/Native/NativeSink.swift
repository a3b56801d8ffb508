import NIOCore
import ParleyCore
import ParleyWire

/// The native protocol's ``SessionSink``: bytes (whole frames, coalesced by the session) go
/// straight to the channel.
/// Thread safety: `Sendable`; holds only the channel, whose methods it calls on the channel's loop.
final class NativeSink: SessionSink {
    let channel: any Channel
    var eventLoop: any EventLoop { channel.eventLoop }
    var format: WireFormat { .native }

    init(channel: any Channel) {
        self.channel = channel
    }

    func write(_ bytes: ByteBuffer) { channel.write(bytes, promise: nil) }

    func flush() { channel.flush() }

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
