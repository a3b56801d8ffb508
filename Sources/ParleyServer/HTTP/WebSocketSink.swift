import NIOCore
import ParleyCore
import ParleyWire
import Synchronization

/// The WebSocket transport's ``ConnectionSink``: bytes already framed as WebSocket text messages
/// (by ``WebSocketEncoder``, once per event for every WebSocket session, or by ``wire(_:)`` for
/// the connection's own replies) written straight to the socket, below Hummingbird's frame
/// encoder; the session's coalescing into 32 KiB writes is kept.
///
/// Reading pauses (too many requests awaiting answers, too many sends awaiting storage) stop the
/// loop that takes messages off the WebSocket; the socket then stops being read once NIO's small
/// inbound buffer is full, and TCP pushes back on the client.
/// Thread safety: `Sendable`; everything but ``eventLoop``, ``format``, ``channel`` and
/// ``waitUntilReading()`` runs on the channel's loop.
final class WebSocketSink: ConnectionSink {
    let channel: any Channel
    var eventLoop: any EventLoop { channel.eventLoop }
    var format: WireFormat { .webSocket }
    /// The context of the handler nearest the socket: writes through it skip the frame encoder.
    private let output: NIOLoopBound<ChannelHandlerContext>
    private let state: NIOLoopBoundBox<State>
    /// Whether reading is paused, for the task that takes messages off the WebSocket.
    private let paused = Atomic<Bool>(false)

    private let maxOutbox: Int

    struct State {
        var pausedBySession = false
        var pausedByRequests = false
        /// The client does not read what it is sent (see ``Outbox``).
        var pausedByOutput = false
        var outbox = Outbox()
        var waiting: [CheckedContinuation<Void, Never>] = []
        var closing = false
        var paused: Bool { pausedBySession || pausedByRequests || pausedByOutput }
        /// Requests wait while replies wait (see ``NativeSink``).
        var holds: Bool { pausedByRequests || pausedByOutput || outbox.holdsRequests }
        var released: (() -> Void)?
        /// The error the connection was closed with (the first, if several).
        var closedWith: ClosedWith?
    }

    var holdsRequests: Bool { state.value.holds }

    func onRelease(_ body: @escaping () -> Void) { state.withValue { $0.released = body } }

    /// On the channel's loop.
    init(channel: any Channel, output: ChannelHandlerContext, maxOutbox: Int) {
        self.channel = channel
        self.output = NIOLoopBound(output, eventLoop: channel.eventLoop)
        self.state = NIOLoopBoundBox(State(), eventLoop: channel.eventLoop)
        self.maxOutbox = maxOutbox
    }

    /// Writes through an ``Outbox``: straight to the socket while NIO's queue is short, else
    /// coalesced until the channel is writable again; a client whose outbox fills while it does
    /// not read is not read either.
    func write(_ bytes: ByteBuffer, flush: Bool, written: EventLoopPromise<Void>?) {
        let writable = channel.isWritable
        let direct = state.withValue { s -> Bool in
            s.outbox.mayWriteDirectly(channelWritable: writable)
        }
        if direct {
            let context = output.value
            context.write(NIOAny(bytes), promise: written)
            if flush { context.flush() }
            return
        }
        update { s in
            if s.outbox.append(bytes, promise: written, channelWritable: writable) { s.pausedByOutput = true }
        }
        if flush { drain() }
    }

    /// Hands what the outbox holds to NIO, if the channel can take it now.
    private func drain() {
        let context = output.value
        guard channel.isWritable else {
            context.flush()
            return
        }
        let loop = channel.eventLoop
        let (taken, held) = state.withValue { s in (s.outbox.take(on: loop), s.holds) }
        // The queued bytes go first; requests held meanwhile are released only after them (they
        // were released before them, whose replies could then overtake what was queued).
        if let (bytes, promise) = taken {
            context.write(NIOAny(bytes), promise: promise)
            context.flush()
        }
        update(heldBefore: held) { $0.pausedByOutput = false }
    }

    /// The channel's writability changed (NIO's queue crossed a water mark).
    func writabilityChanged() { drain() }

    /// Whether the outbox is within its bound.
    var isWritable: Bool { state.value.outbox.bytes <= maxOutbox }

    func wire(_ native: ByteBuffer) -> ByteBuffer { Self.reframe(native, allocator: channel.allocator) }

    func setReading(_ reading: Bool) { update { $0.pausedBySession = !reading } }

    func setReadingForRequests(_ reading: Bool) { update { $0.pausedByRequests = !reading } }

    /// - Parameter heldBefore: whether requests were held before (when the state changed already).
    private func update(heldBefore: Bool? = nil, _ change: (inout State) -> Void) {
        let (resumed, release) = state.withValue { s -> ([CheckedContinuation<Void, Never>], (() -> Void)?) in
            let held = heldBefore ?? s.holds
            change(&s)
            paused.store(s.paused, ordering: .releasing)
            let release = held && !s.holds ? s.released : nil
            guard !s.paused else { return ([], release) }
            defer { s.waiting = [] }
            return (s.waiting, release)
        }
        release?()
        for waiter in resumed { waiter.resume() }
    }

    /// Whether reading is paused (from any thread; set on the loop).
    var pauseRequested: Bool { paused.load(ordering: .acquiring) }

    /// Returns once reading is no longer paused (or the connection has closed).
    func waitUntilReading() async {
        await withCheckedContinuation { (resume: CheckedContinuation<Void, Never>) in
            channel.eventLoop.execute {
                let ready = self.state.withValue { s -> Bool in
                    if !s.paused || !self.channel.isActive { return true }
                    s.waiting.append(resume)
                    return false
                }
                if ready { resume.resume() }
            }
        }
    }

    /// Called when the channel closes: nobody waits for reading any more.
    func closed() {
        let waiting = state.withValue { s in
            s.outbox.discard()
            defer { s.waiting = [] }
            return s.waiting
        }
        for waiter in waiting { waiter.resume() }
    }

    var closeError: ParleyError? { state.value.closedWith?.error }

    func close(with error: ParleyError) {
        state.withValue { s in s.closedWith = s.closedWith ?? ClosedWith(error) }
        let code: UInt16 = switch error.code {
        case .frameTooLarge: 1009
        case .tooManyConnections, .serverBusy: 1013
        case .shuttingDown: 1001
        default: 1008
        }
        finish(with: ServerFrame.error(error).frame(allocator: channel.allocator), code: code, reason: error.code.rawValue)
    }

    /// Writes `frame` (a native frame, re-framed) and a WebSocket close, then closes the
    /// connection once they are written (or after 2 s).
    func finish(with frame: ByteBuffer?, code: UInt16, reason: String, grace: TimeAmount = .seconds(2)) {
        guard state.withValue({ s in defer { s.closing = true }; return !s.closing }) else { return }
        let channel = self.channel
        let context = output.value
        // What is queued goes first.
        if let (bytes, promise) = state.withValue({ $0.outbox.take(on: channel.eventLoop) }) {
            context.write(NIOAny(bytes), promise: promise)
        }
        if let frame { context.write(NIOAny(Self.reframe(frame, allocator: channel.allocator)), promise: nil) }
        let done = channel.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(Self.closeFrame(code: code, reason: reason, allocator: channel.allocator)), promise: done)
        channel.close(once: done.futureResult, within: grace)
    }

    /// Native frames (each a 4-byte big-endian length and that many bytes) as WebSocket text
    /// frames: server frames are not masked, so each length prefix becomes a header.
    static func reframe(_ native: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var input = native
        var output = allocator.buffer(capacity: input.readableBytes + 16)
        while let length = input.readInteger(as: UInt32.self), let payload = input.readSlice(length: Int(length)) {
            WebSocketHeader.write(opcode: 0x1, length: payload.readableBytes, into: &output)
            output.writeImmutableBuffer(payload)
        }
        return output
    }

    /// A close frame with `code` and `reason` (at most 123 bytes).
    static func closeFrame(code: UInt16, reason: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        let reason = Array(reason.utf8.prefix(123))
        var buffer = allocator.buffer(capacity: 4 + 2 + reason.count)
        WebSocketHeader.write(opcode: 0x8, length: 2 + reason.count, into: &buffer)
        buffer.writeInteger(code)
        buffer.writeBytes(reason)
        return buffer
    }
}

/// The handler nearest the socket of a WebSocket connection: ``WebSocketSink`` writes through
/// its context, and it tells the connection when the client has been silent for the idle timeout
/// (from the `IdleStateHandler` below it).
/// Thread safety: a `ChannelHandler`; used on its channel's loop only.
final class WebSocketTap: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    var onIdle: (() -> Void)?
    var onWritabilityChanged: (() -> Void)?

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        onWritabilityChanged?()
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .read? = event as? IdleStateHandler.IdleStateEvent {
            onIdle?()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// The WebSocket format's ``EventEncoder``: the native encoder's JSON, one text message each.
/// Thread safety: stateless.
struct WebSocketEncoder: EventEncoder {
    private let native = NativeEncoder()

    func encode(_ event: Event, allocator: ByteBufferAllocator) -> ByteBuffer {
        WebSocketSink.reframe(native.encode(event, allocator: allocator), allocator: allocator)
    }

    func encodeAcknowledgement(_ message: StoredMessage, id: RequestID?, allocator: ByteBufferAllocator) -> ByteBuffer {
        WebSocketSink.reframe(native.encodeAcknowledgement(message, id: id, allocator: allocator), allocator: allocator)
    }

    func encodeError(_ error: ParleyError, id: RequestID?, allocator: ByteBufferAllocator) -> ByteBuffer {
        WebSocketSink.reframe(native.encodeError(error, id: id, allocator: allocator), allocator: allocator)
    }
}
