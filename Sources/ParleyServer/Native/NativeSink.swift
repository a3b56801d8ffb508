import NIOCore
import ParleyCore
import ParleyWire

/// The native protocol's ``SessionSink``: bytes (whole frames, coalesced by the session) go to
/// the channel through an ``Outbox``. Reading pauses while the session (too many sends awaiting
/// storage), the connection (too many requests awaiting answers) or the outbox (a client not
/// reading its replies) asks for it.
/// Thread safety: `Sendable`; its state lives in a `NIOLoopBoundBox`, and the channel is called
/// on its loop only.
final class NativeSink: ConnectionSink {
    let channel: any Channel
    var eventLoop: any EventLoop { channel.eventLoop }
    var format: WireFormat { .native }
    private let state: NIOLoopBoundBox<State>
    private let maxOutbox: Int

    struct State {
        var bySession = false
        var byRequests = false
        var byOutput = false
        var outbox = Outbox()
        var paused: Bool { bySession || byRequests || byOutput }
        /// Requests wait while replies wait: a client whose socket cannot take what it was sent
        /// gets no further answers queued (at most the replies of requests already under way).
        /// (During a read, replies gather in the outbox to leave as one write; past
        /// ``Outbox/readBatchLimit`` the rest of the read waits for them to go.)
        var holds: Bool { byRequests || byOutput || outbox.holdsRequests }
        /// Called when ``holds`` turns false.
        var released: (() -> Void)?
        /// The error the connection was closed with (the first, if several).
        var closedWith: ClosedWith?
    }

    /// On the channel's loop.
    init(channel: any Channel, maxOutbox: Int) {
        self.channel = channel
        self.maxOutbox = maxOutbox
        self.state = NIOLoopBoundBox(State(), eventLoop: channel.eventLoop)
    }

    var holdsRequests: Bool { state.value.holds }

    func onRelease(_ body: @escaping () -> Void) { state.withValue { $0.released = body } }

    /// The connection's own reason to pause reading (pending requests).
    func setReadingForRequests(_ reading: Bool) { updatePause { $0.byRequests = !reading } }

    /// Changes one reason to pause and switches reading when the outcome changes; releases held
    /// requests when they no longer need to wait.
    /// - Parameter heldBefore: whether requests were held before (when the state changed already).
    private func updatePause(heldBefore: Bool? = nil, _ change: (inout State) -> Void) {
        let (before, after, release) = state.withValue { s -> (Bool, Bool, Bool) in
            let (before, held) = (s.paused, heldBefore ?? s.holds)
            change(&s)
            return (before, s.paused, held && !s.holds)
        }
        apply(before: before, after: after)
        if release { state.value.released?() }
    }

    private func apply(before: Bool, after: Bool) {
        guard before != after else { return }
        channel.setOption(ChannelOptions.autoRead, value: !after).whenFailure { _ in }
        // The frame deadline does not count time the server itself spends not reading.
        channel.pipeline.fireUserInboundEventTriggered(after ? FrameDeadline.Reading.paused : FrameDeadline.Reading.resumed)
        if !after { channel.read() }
    }

    func write(_ bytes: ByteBuffer, flush: Bool, written: EventLoopPromise<Void>?) {
        let writable = channel.isWritable
        if state.value.outbox.mayWriteDirectly(channelWritable: writable) {
            if flush { channel.writeAndFlush(bytes, promise: written) } else { channel.write(bytes, promise: written) }
            return
        }
        updatePause { s in
            if s.outbox.append(bytes, promise: written, channelWritable: writable) { s.byOutput = true }
        }
        if flush { drain() }
    }

    /// Hands what the outbox holds to NIO, if the channel can take it now.
    private func drain() {
        guard channel.isWritable else {
            // What NIO holds unflushed must go, or writability never comes back.
            channel.flush()
            return
        }
        let loop = channel.eventLoop
        guard let (taken, held) = state.withValue({ s -> ((ByteBuffer, EventLoopPromise<Void>?)?, Bool)? in
            s.outbox.reading ? nil : (s.outbox.take(on: loop), s.holds)
        }) else { return }
        // The queued bytes go first; requests held meanwhile are released only after them.
        if let (bytes, promise) = taken { channel.writeAndFlush(bytes, promise: promise) }
        updatePause(heldBefore: held) { $0.byOutput = false }
    }

    /// A read begins: replies wait for its end.
    func startRead() { state.withValue { $0.outbox.reading = true } }

    /// The read has ended: its replies go out as one write.
    func endRead() {
        state.withValue { $0.outbox.reading = false }
        drain()
    }

    /// The channel's writability changed (NIO's queue crossed a water mark).
    func writabilityChanged() { drain() }

    /// The connection has closed.
    func closed() { state.withValue { $0.outbox.discard() } }

    /// Whether the outbox is within its bound.
    var isWritable: Bool { state.value.outbox.bytes <= maxOutbox }

    func wire(_ native: ByteBuffer) -> ByteBuffer { native }

    func setReading(_ reading: Bool) { updatePause { $0.bySession = !reading } }

    var closeError: ParleyError? { state.value.closedWith?.error }

    func close(with error: ParleyError) {
        // What is queued goes first; the error frame follows it.
        let pending = state.withValue { s -> (ByteBuffer, EventLoopPromise<Void>?)? in
            s.closedWith = s.closedWith ?? ClosedWith(error)
            return s.outbox.take(on: channel.eventLoop)
        }
        if let (bytes, promise) = pending { channel.write(bytes, promise: promise) }
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
