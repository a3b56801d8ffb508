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
    }

    private struct Clock {
        var lastMessageID: Int64
        var lastTime: Int64 = 0
    }

    private let state = Locked(State())
    private let clock: Locked<Clock>
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
        let (batch, hook): ([Op], (@Sendable () -> Void)?) = state.withLock { state in
            let n = min(state.pending.count, maxBatch)
            let batch = Array(state.pending.prefix(n))
            state.pending.removeFirst(n)
            return (batch, state.afterBatch)
        }
        write(batch)
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

    private func write(_ batch: [Op]) {
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
        do {
            errors = try writer.write(items, now: Timestamp(milliseconds: now))
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
        }
        for (index, op) in batch.enumerated() {
            switch op {
            case .message(_, let done): done(errors[index].map { .failure($0) } ?? .success(stored[index]!))
            case .groups(_, let done): done(errors[index].map { .failure($0) } ?? .success(()))
            case .readPosition: break
            }
        }
    }

    private static func fail(_ op: Op, _ error: any Error) {
        switch op {
        case .message(_, let done): done(.failure(error))
        case .groups(_, let done): done(.failure(error))
        case .readPosition: break
        }
    }
}
