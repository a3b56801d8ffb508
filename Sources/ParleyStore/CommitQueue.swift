import Collections
import Dispatch
import Logging
import ParleyCore
import Synchronization

/// Group commit: every chat message, group change and read position goes through one FIFO queue;
/// whatever has queued up while the previous transaction ran is written in the next one, through
/// any ``BatchWriter`` (SQLite by default, a store that fails on demand in tests).
///
/// Completions run on the queue's own thread, in queue order, only after the transaction has
/// committed; then ``setAfterBatch(_:)``'s hook runs once. So a message is acknowledged and
/// delivered only once it is stored, and message ids are assigned here, strictly increasing, in
/// commit order (an id given to a batch that failed is not reused).
/// Thread safety: `Sendable`; `enqueue` may be called from any thread. State is in a `Locked` (a pthread mutex);
/// the writes run on one serial dispatch queue.
public final class CommitQueue: Sendable {
    public enum Op: Sendable {
        case message(NewMessage, @Sendable (Result<StoredMessage, any Error>) -> Void)
        case groups([GroupMutation], @Sendable (Result<Void, any Error>) -> Void)
        case readPosition(user: String, messageID: Int64)
    }

    /// Thrown to completions of work queued after ``close()``.
    public struct Closed: Error {}

    private struct State {
        var pending = Deque<Op>()
        var scheduled = false
        var closed = false
        var afterBatch: (@Sendable () -> Void)?
        var observer: (@Sendable (BatchReport) -> Void)?
    }

    private struct Clock {
        var lastMessageID: Int64
        var lastTime: Int64 = 0
    }

    private let state = Locked(State())
    private let clock: Locked<Clock>
    private let health = Locked(StoreHealth())
    private let queue = DispatchQueue(label: "parley.commit")
    private let writer: any BatchWriter
    private let logger: Logger
    /// Most operations written in one transaction.
    public let maxBatch = 4096

    /// - Parameter lastMessageID: the newest stored message id; new ids follow it.
    public init(writer: any BatchWriter, lastMessageID: Int64, logger: Logger = Logger(label: "parley.commit")) {
        self.writer = writer
        self.clock = Locked(Clock(lastMessageID: lastMessageID))
        self.logger = logger
    }

    /// Operations queued and not yet taken into a transaction.
    public var backlog: Int { state.withLock { $0.pending.count } }

    /// The id of the last message committed.
    public var lastMessageID: Int64 { clock.withLock { $0.lastMessageID } }

    /// Sets the hook run on the queue's thread after each batch's completions.
    public func setAfterBatch(_ hook: @escaping @Sendable () -> Void) {
        state.withLock { $0.afterBatch = hook }
    }

    /// Queues `op`; its completion runs after it is committed (or failed).
    public func enqueue(_ op: Op) {
        let schedule: Bool? = state.withLock { state in
            guard !state.closed else { return nil }
            state.pending.append(op)
            if state.scheduled { return false }
            state.scheduled = true
            return true
        }
        switch schedule {
        case nil: Self.fail(op, Closed())
        case true?: queue.async { self.drain() }
        case false?: break
        }
    }

    /// Waits for everything queued so far, then refuses new work.
    public func close() {
        state.withLock { $0.closed = true }
        flush()
    }

    /// Waits until everything queued before this call is committed.
    public func flush() {
        while state.withLock({ $0.scheduled }) {
            queue.sync {}
        }
    }

    private func drain() {
        let (batch, hook, observer): ([Op], (@Sendable () -> Void)?, (@Sendable (BatchReport) -> Void)?) = state.withLock { state in
            let n = min(state.pending.count, maxBatch)
            let batch = Array(state.pending.prefix(n))
            state.pending.removeFirst(n)
            return (batch, state.afterBatch, state.observer)
        }
        let (accepted, duration) = write(batch)
        observer?(BatchReport(operations: batch.count, duration: duration, accepted: accepted))
        hook?()
        let again = state.withLock { state in
            if state.pending.isEmpty {
                state.scheduled = false
                return false
            }
            return true
        }
        if again { queue.async { self.drain() } }
    }

    /// Writes one batch and runs its completions.
    /// - Returns: whether the store accepted it (all of it, or, written item by item after the
    ///   batch failed, at least one item), and how long the writing took.
    private func write(_ batch: [Op]) -> (accepted: Bool, duration: Duration) {
        var clock = self.clock.withLock { $0 }
        let now = max(Timestamp.now.milliseconds, clock.lastTime)
        clock.lastTime = now
        var stored: [StoredMessage?] = Array(repeating: nil, count: batch.count)
        var items: [WriteItem] = []
        items.reserveCapacity(batch.count)
        for (index, op) in batch.enumerated() {
            switch op {
            case .message(let m, _):
                clock.lastMessageID += 1
                let message = StoredMessage(id: clock.lastMessageID, time: Timestamp(milliseconds: now), sender: m.sender,
                                            room: m.room, roomName: m.roomName, text: m.text)
                stored[index] = message
                items.append(.message(message, senderKey: m.senderKey, peerKey: m.peerKey))
            case .groups(let mutations, _):
                items.append(.groups(mutations))
            case .readPosition(let user, let id):
                items.append(.readPosition(user: user, messageID: id))
            }
        }
        // Ids handed to a batch are never reused, stored or not: ids stay strictly increasing.
        self.clock.withLock { $0 = clock }
        var errors: [Int: any Error]
        var accepted = true
        let started = ContinuousClock.now
        do {
            errors = try writer.write(items, now: Timestamp(milliseconds: now))
            noteAccepted()
        } catch {
            // One bad item must not fail the others: write them one by one, each in its own
            // transaction, so only what really cannot be stored fails.
            logger.error("commit failed; writing the batch item by item", metadata: ["error": "\(error)", "batch": "\(batch.count)"])
            errors = [:]
            for (index, item) in items.enumerated() {
                do {
                    if let groupError = try writer.write([item], now: Timestamp(milliseconds: now))[0] { errors[index] = groupError }
                } catch {
                    errors[index] = error
                }
            }
            accepted = errors.count < items.count
            if accepted { noteAccepted() } else { noteRefused(error) }
        }
        let duration = ContinuousClock.now - started
        for (index, op) in batch.enumerated() {
            switch op {
            case .message(_, let done): done(errors[index].map { .failure($0) } ?? .success(stored[index]!))
            case .groups(_, let done): done(errors[index].map { .failure($0) } ?? .success(()))
            case .readPosition: break
            }
        }
        return (accepted, duration)
    }

    private static func fail(_ op: Op, _ error: any Error) {
        switch op {
        case .message(_, let done): done(.failure(error))
        case .groups(_, let done): done(.failure(error))
        case .readPosition: break
        }
    }
}

// MARK: Observing the store (metrics and health)

extension CommitQueue {
    /// What one batch cost, for metrics.
    public struct BatchReport: Sendable {
        /// Operations in the batch (messages, group changes, read positions).
        public var operations: Int
        /// The writing of the batch: its transaction (and, if that failed, the item-by-item ones).
        public var duration: Duration
        /// Whether the store accepted it (see ``StoreHealth/accepting``).
        public var accepted: Bool
    }

    /// Whether the store accepts writes, as the last write (or ``probe(_:)``) found it.
    public struct StoreHealth: Sendable {
        /// False after a batch of which nothing could be stored (the batch failed and so did each
        /// of its items one by one), until a batch or a probe is stored again.
        public var accepting = true
        /// Batches (and probes) the store refused since the start.
        public var refusals = 0
        /// The error of the last refusal, for operators.
        public var lastError: String?
        /// When the store last refused a write.
        public var lastRefusal: Timestamp?
    }

    /// Sets the hook run on the queue's thread after each batch is written (after its
    /// completions, before the ``setAfterBatch(_:)`` hook): its size, how long it took, whether
    /// it was stored.
    /// It runs on the commit thread, on the acknowledgement path: keep it to a few atomic updates.
    public func setObserver(_ observer: @escaping @Sendable (BatchReport) -> Void) {
        state.withLock { $0.observer = observer }
    }

    /// Whether the store accepts writes (cheap: no I/O).
    public var storeHealth: StoreHealth { health.withLock { $0 } }

    /// Asks the store, on the commit queue's thread (after what is being written now), to write
    /// something that changes nothing: the read position of no account. `done` gets whether it was
    /// stored, which also becomes ``storeHealth``; after ``close()``, `false`. Used by `/health`
    /// once a write has failed, so that a server with nothing to write still finds out that its
    /// store has come back.
    public func probe(_ done: @escaping @Sendable (Bool) -> Void) {
        queue.async {
            guard !self.state.withLock({ $0.closed }) else { return done(false) }
            do {
                _ = try self.writer.write([.readPosition(user: "", messageID: 0)], now: Timestamp.now)
                self.noteAccepted()
                done(true)
            } catch {
                self.noteRefused(error)
                done(false)
            }
        }
    }

    private func noteAccepted() {
        health.withLock { $0.accepting = true }
    }

    private func noteRefused(_ error: any Error) {
        let now = Timestamp.now
        health.withLock { h in
            h.accepting = false
            h.refusals += 1
            h.lastError = "\(error)"
            h.lastRefusal = now
        }
    }
}
