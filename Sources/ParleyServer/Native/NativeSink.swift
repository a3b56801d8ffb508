import NIOCore
import ParleyCore
import ParleyWire

/// The native protocol's ``SessionSink``: bytes (whole frames, coalesced by the session) go
/// straight to the channel. Reading pauses while either the session (too many sends awaiting
/// storage) or the connection (too many requests awaiting answers) asks for it.
/// Thread safety: `Sendable`; the pause reasons live in a `NIOLoopBoundBox`, and the channel is
/// called on its loop only.
final class NativeSink: ConnectionSink {
    let channel: any Channel
    var eventLoop: any EventLoop { channel.eventLoop }
    var format: WireFormat { .native }
    private let paused: NIOLoopBoundBox<(bySession: Bool, byRequests: Bool)>

    /// On the channel's loop.
    init(channel: any Channel) {
        self.channel = channel
        self.paused = NIOLoopBoundBox((false, false), eventLoop: channel.eventLoop)
    }

    /// The connection's own reason to pause reading (pending requests).
    func setReadingForRequests(_ reading: Bool) { updatePause { $0.byRequests = !reading } }

    /// Changes one reason to pause and switches reading when the outcome changes.
    private func updatePause(_ change: (inout (bySession: Bool, byRequests: Bool)) -> Void) {
        let (before, after) = paused.withValue { p -> (Bool, Bool) in
            let before = p.bySession || p.byRequests
            change(&p)
            return (before, p.bySession || p.byRequests)
        }
        apply(before: before, after: after)
    }

    private func apply(before: Bool, after: Bool) {
        guard before != after else { return }
        channel.setOption(ChannelOptions.autoRead, value: !after).whenFailure { _ in }
        // The frame deadline does not count time the server itself spends not reading.
        channel.pipeline.fireUserInboundEventTriggered(after ? FrameDeadline.Reading.paused : FrameDeadline.Reading.resumed)
        if !after { channel.read() }
    }

    func write(_ bytes: ByteBuffer, flush: Bool, written: EventLoopPromise<Void>?) {
        if flush { channel.writeAndFlush(bytes, promise: written) } else { channel.write(bytes, promise: written) }
    }

    var isWritable: Bool { channel.isWritable }

    func wire(_ native: ByteBuffer) -> ByteBuffer { native }

    func setReading(_ reading: Bool) { updatePause { $0.bySession = !reading } }

    func close(with error: ParleyError) {
        Self.closeWithError(channel, error)
    }

    /// Writes an error frame and closes the connection once it is written (or after 2 s).
    static func closeWithError(_ channel: any Channel, _ error: ParleyError) {
        let frame = ServerFrame.error(error).frame(allocator: channel.allocator)
        channel.close(once: channel.writeAndFlush(frame), within: .seconds(2))
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
