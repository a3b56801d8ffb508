import Dispatch
import Foundation
import GRDB
import Logging
import ParleyCore
import Synchronization

/// Group commit: every chat message, group change and read position goes through one FIFO queue;
/// whatever has queued up while the previous transaction ran is written in the next one.
///
/// Completions run on the queue's own thread, in queue order, only after the transaction has
/// committed; then ``afterBatch`` runs once. So a message is acknowledged and delivered only once
/// it is stored, and message ids are assigned here, strictly increasing, in commit order.
/// Thread safety: `Sendable`; `enqueue` may be called from any thread. State is in a `Mutex`;
/// the database work runs on one serial dispatch queue.
public final class CommitQueue: Sendable {
    public enum Op: Sendable {
        case message(NewMessage, @Sendable (Result<StoredMessage, any Error>) -> Void)
        case groups([GroupMutation], @Sendable (Result<Void, any Error>) -> Void)
        case readPosition(user: String, messageID: Int64)
    }

    /// Thrown to completions of work queued after ``close()``.
    public struct Closed: Error {}

    private struct State {
        var pending: [Op] = []
        var scheduled = false
        var closed = false
        var afterBatch: (@Sendable () -> Void)?
    }

    private struct Clock {
        var lastMessageID: Int64
        var lastTime: Int64 = 0
    }

    private let state = Mutex(State())
    private let clock: Mutex<Clock>
    private let queue = DispatchQueue(label: "parley.commit")
    private let pool: DatabasePool
    private let logger: Logger
    /// Most operations written in one transaction.
    public let maxBatch = 4096

    init(pool: DatabasePool, lastMessageID: Int64, logger: Logger) {
        self.pool = pool
        self.clock = Mutex(Clock(lastMessageID: lastMessageID))
        self.logger = logger
    }

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
        var stored: [StoredMessage?] = Array(repeating: nil, count: batch.count)
        var groupErrors: [Int: any Error] = [:]
        var clock = self.clock.withLock { $0 }
        let now = max(Timestamp.now.milliseconds, clock.lastTime)
        clock.lastTime = now
        do {
            try pool.write { db in
                let insert = try db.cachedStatement(sql: """
                    INSERT INTO message (id, time, sender, sender_key, room, room_name, peer_key, text)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """)
                for (index, op) in batch.enumerated() {
                    switch op {
                    case .message(let m, _):
                        clock.lastMessageID += 1
                        let message = StoredMessage(id: clock.lastMessageID, time: Timestamp(milliseconds: now), sender: m.sender,
                                                    room: m.room, roomName: m.roomName, text: m.text)
                        try insert.execute(arguments: [message.id, now, m.sender, m.senderKey, m.room.storageKey, m.roomName, m.peerKey, m.text])
                        stored[index] = message
                    case .groups(let mutations, _):
                        do {
                            try db.inSavepoint {
                                for mutation in mutations { try Self.apply(mutation, db: db, now: now) }
                                return .commit
                            }
                        } catch {
                            groupErrors[index] = error
                        }
                    case .readPosition(let user, let id):
                        try db.execute(sql: "UPDATE account SET last_read = MAX(last_read, ?) WHERE key = ?", arguments: [id, user])
                    }
                }
            }
        } catch {
            logger.error("commit failed", metadata: ["error": "\(error)", "batch": "\(batch.count)"])
            for op in batch { Self.fail(op, error) }
            return
        }
        self.clock.withLock { $0 = clock }
        for (index, op) in batch.enumerated() {
            switch op {
            case .message(_, let done): done(.success(stored[index]!))
            case .groups(_, let done): done(groupErrors[index].map { .failure($0) } ?? .success(()))
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

    static func apply(_ mutation: GroupMutation, db: Database, now: Int64) throws {
        switch mutation {
        case .create(let group):
            try db.execute(
                sql: "INSERT INTO room_group (id, key, name, owner, invite_only, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [group.id, group.key, group.name, group.owner, group.inviteOnly, now])
            try db.execute(sql: "UPDATE counter SET value = MAX(value, ?) WHERE name = 'group_id'", arguments: [group.id])
            for member in group.members {
                try db.execute(sql: "INSERT INTO group_member (group_id, user) VALUES (?, ?)", arguments: [group.id, member])
            }
        case .addMember(let id, let user):
            try db.execute(sql: "INSERT INTO group_member (group_id, user) VALUES (?, ?)", arguments: [id, user])
        case .removeMember(let id, let user):
            try db.execute(sql: "DELETE FROM group_member WHERE group_id = ? AND user = ?", arguments: [id, user])
        case .setOwner(let id, let user):
            try db.execute(sql: "UPDATE room_group SET owner = ? WHERE id = ?", arguments: [user, id])
        case .setInviteOnly(let id, let flag):
            try db.execute(sql: "UPDATE room_group SET invite_only = ? WHERE id = ?", arguments: [flag, id])
        case .addInvitation(let id, let user, let by):
            try db.execute(sql: "INSERT OR REPLACE INTO group_invitation (group_id, user, invited_by) VALUES (?, ?, ?)",
                           arguments: [id, user, by])
        case .removeInvitation(let id, let user):
            try db.execute(sql: "DELETE FROM group_invitation WHERE group_id = ? AND user = ?", arguments: [id, user])
        case .delete(let id):
            try db.execute(sql: "DELETE FROM room_group WHERE id = ?", arguments: [id])
        }
    }
}
