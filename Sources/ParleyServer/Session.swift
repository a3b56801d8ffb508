import Foundation
import Logging
import NIOCore
import ParleyCore
import Synchronization

/// One logged-in connection of a user, whatever its transport. A user may have several sessions;
/// each gets every event.
///
/// The hub holds sessions in sets split by event loop and hands them deliveries grouped by loop;
/// the session keeps its read position, holds live deliveries back while the login replay is
/// read, enforces the outbox bound and counts the sends awaiting storage, and writes through its
/// ``SessionSink``.
/// Thread safety: `Sendable`. Immutable fields are set at login; the mutable delivery state lives
/// in a `NIOLoopBoundBox`, so it is only touched on the sink's loop (checked at run time). Every
/// method except ``sendEncoded(_:)`` runs on that loop.
public final class Session: Sendable, Hashable, CustomStringConvertible {
    struct DeliveryState {
        /// While the login replay is being read from storage, live deliveries wait here.
        var replaying = true
        var held: [(ByteBuffer, Int64)] = []
        var heldBytes = 0
        /// The id of the newest message queued for this session (replayed or live).
        var written: Int64
        /// The read position: the id of the newest message the client has received (acknowledged,
        /// or, for a client that does not acknowledge, whose write completed).
        var confirmed: Int64
        /// The id of the newest message in ``chunk``.
        var chunkNewest: Int64 = 0
        /// Frames queued since the last flush, copied into one chunk of at most ``chunkSize``
        /// bytes (a full chunk is handed to the sink and a new one started): one write per
        /// session per batch instead of one per frame.
        var chunk: ByteBuffer?
        var closing = false
        /// Sends awaiting storage; reading pauses above the limit.
        var inflight = 0
        var readsPaused = false
        /// Reading is paused because the commit queue's backlog is over its bound.
        var storagePaused = false
        /// The read position last handed to storage, and whether a write of it is scheduled.
        var storedPosition: Int64
        var positionWriteScheduled = false
    }

    public let id: Int
    public let identity: Identity
    /// The client's IP address, when the session began (for the user's own session list).
    public let address: String
    /// When the session began.
    public let since: Date
    /// When the client last sent a request (milliseconds since 1970), for `parley admin online`.
    let lastActive: Atomic<Int64>
    /// The hash of the login token this session used or was given (revoked when the session is
    /// ended by its user, or by `logout`).
    public let tokenHash: String?
    public let sink: any SessionSink
    /// Whether the client acknowledges what it has shown (`"ack":true` at login).
    public let acknowledges: Bool
    public var loop: any EventLoop { sink.eventLoop }
    /// Index of the sink's loop in the hub's loop list, for grouping deliveries.
    let loopIndex: Int
    let format: Int
    let state: NIOLoopBoundBox<DeliveryState>
    let encoder: any EventEncoder
    let limits: Limits
    let maxInflight: Int
    /// The server's logger; ``logger`` adds this session's metadata when something is logged,
    /// so an idle session holds no metadata of its own.
    let baseLogger: Logger
    /// Stores a moved read position (accounts only), at most once per ``positionInterval``.
    let storePosition: (@Sendable (Int64) -> Void)?
    let positionInterval: TimeAmount

    /// - Parameters:
    ///   - written: the newest message already fanned out (live deliveries older than it were
    ///     before this session existed and come, if at all, in the replay).
    ///   - readPosition: what the user has received (where the replay starts).
    init(id: Int, identity: Identity, sink: any SessionSink, encoder: any EventEncoder, loopIndex: Int, written: Int64,
         readPosition: Int64, acknowledges: Bool = false, limits: Limits, maxInflight: Int, logger: Logger,
         positionInterval: TimeAmount = .seconds(1), storePosition: (@Sendable (Int64) -> Void)? = nil,
         address: String = "?", tokenHash: String? = nil) {
        self.acknowledges = acknowledges
        self.address = address
        self.since = Date()
        self.lastActive = Atomic(Timestamp.now.milliseconds)
        self.tokenHash = tokenHash
        self.id = id
        self.identity = identity
        self.sink = sink
        self.encoder = encoder
        self.format = sink.format.index
        self.loopIndex = loopIndex
        self.state = .makeBoxSendingValue(DeliveryState(written: written, confirmed: readPosition, storedPosition: readPosition),
                                          eventLoop: sink.eventLoop)
        self.positionInterval = positionInterval
        self.storePosition = storePosition
        self.limits = limits
        self.maxInflight = maxInflight
        self.baseLogger = logger
    }

    public static func == (a: Session, b: Session) -> Bool { a === b }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    /// A logger with `user` and `session` metadata.
    var logger: Logger {
        var logger = baseLogger
        logger[metadataKey: "user"] = "\(identity.name)"
        logger[metadataKey: "session"] = "\(id)"
        return logger
    }

    public var description: String { "session \(id) of \(identity.name)" }

    /// Notes that the client just sent a request.
    func touch() { lastActive.store(Timestamp.now.milliseconds, ordering: .relaxed) }

    /// The transport's name, for the user's session list.
    var transport: String { format == WireFormat.webSocket.index ? "websocket" : "native" }

    /// Queues `bytes` (a whole frame of this session's format) without flushing. On the loop only.
    ///
    /// State is decided inside the loop-bound box and the sink is called only after leaving it:
    /// a write or close can re-enter this session (a failed write closes the connection, which
    /// detaches the session and reads its state).
    /// - Returns: whether a flush is now owed (the caller collects those and flushes once).
    @discardableResult
    func deliver(_ bytes: ByteBuffer, messageID: Int64) -> Bool {
        enum Action { case nothing, queued(owed: Bool), writeFull(ByteBuffer, newest: Int64), overflow }
        let action = state.withValue { s -> Action in
            if s.closing { return .nothing }
            if s.replaying {
                s.held.append((bytes, messageID))
                s.heldBytes += bytes.readableBytes
                if s.heldBytes > limits.maxOutboxBytes {
                    s.closing = true
                    s.held = []
                    return .overflow
                }
                return .nothing
            }
            if messageID > s.written { s.written = messageID }
            if s.chunk != nil {
                if s.chunk!.readableBytes + bytes.readableBytes <= Self.chunkSize {
                    s.chunk!.writeImmutableBuffer(bytes)
                    if messageID > s.chunkNewest { s.chunkNewest = messageID }
                    return .queued(owed: false)
                }
                // Keep chunks small enough to stay on malloc's heap (big ones are mmapped,
                // which costs page faults on every batch): hand this one to the sink.
                let full = s.chunk!
                let newest = s.chunkNewest
                s.chunk = Self.chunk(starting: bytes)
                s.chunkNewest = messageID
                return .writeFull(full, newest: newest)
            }
            // The first frame since the last flush: what the connection could not take then is
            // still queued now. Over the bound means this client is not keeping up.
            guard sink.isWritable else {
                s.closing = true
                return .overflow
            }
            s.chunk = Self.chunk(starting: bytes)
            s.chunkNewest = messageID
            return .queued(owed: true)
        }
        switch action {
        case .nothing: return false
        case .queued(let owed): return owed
        case .writeFull(let full, let newest):
            sink.write(full, flush: false, written: confirmation(upTo: newest))
            return false
        case .overflow:
            overflow()
            return false
        }
    }

    /// Largest coalesced write.
    static let chunkSize = 32 * 1024

    static func chunk(starting bytes: ByteBuffer) -> ByteBuffer {
        var chunk = ByteBufferAllocator().buffer(capacity: max(min(bytes.readableBytes * 8, chunkSize), bytes.readableBytes))
        chunk.writeImmutableBuffer(bytes)
        return chunk
    }

    /// Sends what ``deliver(_:messageID:)`` queued. On the loop only.
    func flush() {
        let (chunk, newest) = state.withValue { s in
            defer { s.chunk = nil; s.chunkNewest = 0 }
            return (s.chunk, s.chunkNewest)
        }
        if let chunk {
            sink.write(chunk, flush: true, written: confirmation(upTo: newest))
        }
    }

    /// For a client that does not acknowledge: a promise that, once the write of messages up to
    /// `newest` has completed, moves the read position there. Nil when there is nothing to move
    /// (so clients that acknowledge, and writes without messages, cost no promise).
    private func confirmation(upTo newest: Int64) -> EventLoopPromise<Void>? {
        guard !acknowledges, newest > 0, newest > state.value.confirmed else { return nil }
        let promise = loop.makePromise(of: Void.self)
        promise.futureResult.whenSuccess { self.confirm(upTo: newest) }
        return promise
    }

    private func confirm(upTo id: Int64) {
        moveReadPosition { _ in id }
    }

    /// The client says it has shown every message up to `through`. On the loop only.
    func acknowledge(through: Int64) {
        moveReadPosition { s in min(through, s.written) }
    }

    /// Moves the read position forward (never back) and, the first time it moves after being
    /// stored, schedules storing it one ``positionInterval`` later: positions are written as they
    /// move, batched with the commits, so after a crash at most the last interval is replayed.
    private func moveReadPosition(_ to: (DeliveryState) -> Int64) {
        guard let storePosition else {
            state.withValue { s in s.confirmed = max(s.confirmed, to(s)) }
            return
        }
        let schedule = state.withValue { s -> Bool in
            s.confirmed = max(s.confirmed, to(s))
            guard s.confirmed > s.storedPosition, !s.positionWriteScheduled else { return false }
            s.positionWriteScheduled = true
            return true
        }
        guard schedule else { return }
        loop.scheduleTask(in: positionInterval) {
            let position = self.state.withValue { s -> Int64? in
                s.positionWriteScheduled = false
                guard s.confirmed > s.storedPosition, !s.closing else { return nil }
                s.storedPosition = s.confirmed
                return s.confirmed
            }
            if let position { storePosition(position) }
        }
    }

    /// Sends bytes already in this session's format (a reply), from any thread.
    public func sendEncoded(_ bytes: ByteBuffer) {
        if loop.inEventLoop {
            deliver(bytes, messageID: 0)
            flush()
        } else {
            loop.execute {
                self.deliver(bytes, messageID: 0)
                self.flush()
            }
        }
    }

    /// Writes one page of the login replay (or its closing frames), ahead of everything held back
    /// meanwhile. On the loop only.
    /// - Parameter newest: the newest message in the page (0 for none).
    /// - Returns: a future that succeeds once the page has been handed to the operating system
    ///   (so the next page is read only then: a huge backlog costs one page of memory), and fails
    ///   when the connection has gone.
    func writeReplayPage(_ frames: [ByteBuffer], newest: Int64) -> EventLoopFuture<Void> {
        guard !state.value.closing, !frames.isEmpty else {
            return loop.makeFailedFuture(ChannelError.ioOnClosedChannel)
        }
        var chunk = ByteBufferAllocator().buffer(capacity: frames.reduce(0) { $0 + $1.readableBytes })
        for frame in frames { chunk.writeImmutableBuffer(frame) }
        let written = loop.makePromise(of: Void.self)
        if newest > 0, !acknowledges {
            written.futureResult.whenSuccess { self.confirm(upTo: newest) }
        }
        sink.write(chunk, flush: true, written: written)
        return written.futureResult
    }

    /// Whether the session has ended (its connection closed or is closing). On the loop only.
    var isClosing: Bool { state.value.closing }

    /// The connection has gone: nothing more is written, and work for it is dropped. On the loop only.
    func ended() {
        state.withValue { s in s.closing = true }
    }

    /// Ends the login replay: the replayed frames have been written; live messages held meanwhile
    /// follow them (those the replay already covered are skipped). On the loop only.
    func finishReplay(through lastReplayed: Int64) {
        let held = state.withValue { s in
            s.replaying = false
            if lastReplayed > s.written { s.written = lastReplayed }
            defer { s.held = []; s.heldBytes = 0 }
            return s.held
        }
        for (bytes, id) in held where id == 0 || id > lastReplayed {
            deliver(bytes, messageID: id)
        }
        flush()
    }

    /// The read position: the newest message the client has received. On the loop only.
    var readPosition: Int64 { state.value.confirmed }

    /// Counts a send waiting for storage; pauses reading when too many are outstanding. On the loop only.
    func sendStarted() {
        let pause = state.withValue { s in
            s.inflight += 1
            guard s.inflight >= maxInflight && !s.readsPaused else { return false }
            s.readsPaused = true
            return !s.storagePaused
        }
        if pause { sink.setReading(false) }
    }

    /// A send was stored (or failed); resumes reading once the backlog halves. On the loop only.
    func sendFinished() {
        let resume = state.withValue { s in
            s.inflight -= 1
            guard s.readsPaused && s.inflight <= maxInflight / 2 else { return false }
            s.readsPaused = false
            return !s.storagePaused
        }
        if resume { sink.setReading(true) }
    }

    /// The commit queue is over its bound: stop reading this sender until it has caught up
    /// (``storageCaughtUp()``). On the loop only.
    func waitForStorage() {
        let pause = state.withValue { s in
            guard !s.storagePaused else { return false }
            s.storagePaused = true
            return !s.readsPaused
        }
        if pause { sink.setReading(false) }
    }

    /// The commit queue's backlog has halved: read on. On the loop only.
    func storageCaughtUp() {
        let resume = state.withValue { s in
            guard s.storagePaused else { return false }
            s.storagePaused = false
            return !s.readsPaused
        }
        if resume { sink.setReading(true) }
    }

    /// The client cannot keep up: tell it why, then disconnect it.
    private func overflow() {
        logger.notice("disconnecting slow consumer", metadata: ["limit": "\(limits.maxOutboxBytes)"])
        sink.close(with: ParleyError(.slowConsumer, "you were not reading fast enough: more than \(limits.maxOutboxBytes) bytes were queued for you"))
    }
}
