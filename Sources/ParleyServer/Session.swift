import Logging
import NIOCore
import ParleyCore
import ParleyWire

/// One logged-in connection of a user. A user may have several sessions; each gets every event.
///
/// The hub holds sessions in snapshots and hands them deliveries grouped by event loop; every
/// method except ``send(_:)`` runs on the session's own event loop.
/// Thread safety: `Sendable`. Immutable fields are set at login; the mutable delivery state lives
/// in a `NIOLoopBoundBox`, so it is only touched on `loop` (checked at run time).
public final class Session: Sendable, CustomStringConvertible {
    struct DeliveryState {
        /// While the login replay is being read from storage, live messages wait here.
        var replaying = true
        var held: [(ByteBuffer, Int64)] = []
        var heldBytes = 0
        /// The highest message id written to this connection.
        var lastDelivered: Int64
        /// Frames queued since the last flush, copied into one chunk of at most ``chunkSize``
        /// bytes (a full chunk is written and a new one started): one write per session per
        /// batch instead of one per frame.
        var outbox: ByteBuffer?
        var closing = false
        /// Sends awaiting storage; reading pauses above the limit.
        var inflight = 0
        var readsPaused = false
    }

    public let id: Int
    public let identity: Identity
    public let channel: any Channel
    public let loop: any EventLoop
    /// Index of `loop` in the hub's loop list, for grouping deliveries.
    let loopIndex: Int
    let state: NIOLoopBoundBox<DeliveryState>
    let limits: Limits
    let maxInflight: Int
    /// The server's logger; ``logger`` adds this session's metadata when something is logged,
    /// so an idle session holds no metadata of its own.
    let baseLogger: Logger

    init(id: Int, identity: Identity, channel: any Channel, loopIndex: Int, watermark: Int64, limits: Limits, maxInflight: Int, logger: Logger) {
        self.id = id
        self.identity = identity
        self.channel = channel
        self.loop = channel.eventLoop
        self.loopIndex = loopIndex
        self.state = NIOLoopBoundBox(DeliveryState(lastDelivered: watermark), eventLoop: channel.eventLoop)
        self.limits = limits
        self.maxInflight = maxInflight
        self.baseLogger = logger
    }

    /// A logger with `user` and `session` metadata.
    var logger: Logger {
        var logger = baseLogger
        logger[metadataKey: "user"] = "\(identity.name)"
        logger[metadataKey: "session"] = "\(id)"
        return logger
    }

    public var description: String { "session \(id) of \(identity.name)" }

    /// Queues `buffer` (a whole frame) for this connection without flushing. On the loop only.
    ///
    /// State is decided inside the loop-bound box and the channel is called only after leaving it:
    /// a write or close can re-enter this session (a failed write closes the channel, whose
    /// `channelInactive` detaches the session and reads its state).
    /// - Returns: whether a flush is now owed (the caller collects those and flushes once).
    @discardableResult
    func enqueue(_ buffer: ByteBuffer, messageID: Int64) -> Bool {
        enum Action { case nothing, queued(owed: Bool), writeFull(ByteBuffer), overflow }
        let action = state.withValue { s -> Action in
            if s.closing { return .nothing }
            if s.replaying {
                s.held.append((buffer, messageID))
                s.heldBytes += buffer.readableBytes
                if s.heldBytes > limits.maxOutboxBytes {
                    s.closing = true
                    s.held = []
                    return .overflow
                }
                return .nothing
            }
            if messageID > s.lastDelivered { s.lastDelivered = messageID }
            if s.outbox != nil {
                if s.outbox!.readableBytes + buffer.readableBytes <= Self.chunkSize {
                    s.outbox!.writeImmutableBuffer(buffer)
                    return .queued(owed: false)
                }
                // Keep chunks small enough to stay on malloc's heap (big ones are mmapped,
                // which costs page faults on every batch): hand this chunk to the channel.
                let full = s.outbox!
                s.outbox = Self.chunk(starting: buffer, allocator: channel.allocator)
                return .writeFull(full)
            }
            // The first frame since the last flush: what the socket could not take then is
            // still queued now. Over the bound means this client is not keeping up.
            guard channel.isWritable else {
                s.closing = true
                return .overflow
            }
            s.outbox = Self.chunk(starting: buffer, allocator: channel.allocator)
            return .queued(owed: true)
        }
        switch action {
        case .nothing: return false
        case .queued(let owed): return owed
        case .writeFull(let full):
            channel.write(full, promise: nil)
            return false
        case .overflow:
            overflow()
            return false
        }
    }

    /// Largest coalesced write.
    static let chunkSize = 32 * 1024

    static func chunk(starting buffer: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var chunk = allocator.buffer(capacity: max(min(buffer.readableBytes * 8, chunkSize), buffer.readableBytes))
        chunk.writeImmutableBuffer(buffer)
        return chunk
    }

    /// Writes and flushes what ``enqueue(_:messageID:)`` queued. On the loop only.
    func flush() {
        let outbox = state.withValue { s in
            defer { s.outbox = nil }
            return s.outbox
        }
        if let outbox { channel.writeAndFlush(outbox, promise: nil) }
    }

    /// Writes one frame and flushes, from any thread.
    public func send(_ frame: ServerFrame) {
        let buffer = frame.frame(allocator: channel.allocator)
        if loop.inEventLoop {
            enqueue(buffer, messageID: 0)
            flush()
        } else {
            loop.execute {
                self.enqueue(buffer, messageID: 0)
                self.flush()
            }
        }
    }

    /// Ends the login replay: the replayed frames have been written; live messages held meanwhile
    /// follow them (those the replay already covered are skipped). On the loop only.
    func finishReplay(through lastReplayed: Int64) {
        let held = state.withValue { s in
            s.replaying = false
            if lastReplayed > s.lastDelivered { s.lastDelivered = lastReplayed }
            defer { s.held = []; s.heldBytes = 0 }
            return s.held
        }
        for (buffer, id) in held where id == 0 || id > lastReplayed {
            enqueue(buffer, messageID: id)
        }
        flush()
    }

    /// The highest message id written to this session. On the loop only.
    var lastDelivered: Int64 { state.value.lastDelivered }

    /// Counts a send waiting for storage; pauses reading when too many are outstanding. On the loop only.
    func sendStarted() {
        let pause = state.withValue { s in
            s.inflight += 1
            guard s.inflight >= maxInflight && !s.readsPaused else { return false }
            s.readsPaused = true
            return true
        }
        if pause { channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in } }
    }

    /// A send was stored (or failed); resumes reading once the backlog halves. On the loop only.
    func sendFinished() {
        let resume = state.withValue { s in
            s.inflight -= 1
            guard s.readsPaused && s.inflight <= maxInflight / 2 else { return false }
            s.readsPaused = false
            return true
        }
        if resume {
            channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
            channel.read()
        }
    }

    /// The client cannot keep up: tell it why, then disconnect it.
    private func overflow() {
        logger.notice("disconnecting slow consumer", metadata: ["limit": "\(limits.maxOutboxBytes)"])
        Connection.closeWithError(
            channel, ParleyError(.slowConsumer, "you were not reading fast enough: more than \(limits.maxOutboxBytes) bytes were queued for you"))
    }
}
