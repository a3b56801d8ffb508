import Foundation
import HummingbirdBcrypt
import Logging
import NIOCore
import NIOPosix
import ParleyCore
import ParleyStore
import ParleyWire
import Synchronization

/// The chat hub: who is online, the groups, and the fan-out of every event to its recipients.
///
/// Decisions are made under one short lock (``HubState``) and return what to do; the doing
/// (storage, encoding, writes) happens after the lock is released. Messages are delivered only
/// after the commit queue has stored them; each is encoded once per wire format and handed to
/// each event loop in one hop per batch (see docs/ARCHITECTURE.md).
/// Thread safety: `Sendable`; every method may be called from any thread. Blocking work (bcrypt,
/// reads) runs on `threadPool`, never on an event loop.
public final class Hub: Sendable {
    let store: Store
    let configuration: ServerConfiguration
    let loops: [any EventLoop]
    let threadPool: NIOThreadPool
    let logger: Logger
    let state: Mutex<HubState>
    /// Messages committed in the current batch, waiting for ``dispatchCommitted()``.
    let committed = Mutex<[Committed]>([])
    let allocator = ByteBufferAllocator()
    let nextSessionID = Atomic<Int>(1)
    /// Per event loop, the fan-out waiting for it (indexed like `loops`): chat messages, group
    /// events and presence all go out this one way.
    let loopOutboxes: [LoopOutboxBox]
    /// Presence changes waiting to go out together (see ``broadcastPresence(of:online:)``).
    let presence = Mutex<(pending: [(buffer: ByteBuffer, user: String)], scheduled: Bool)>(([], false))
    /// How long presence changes are gathered before they are sent.
    static let presenceWindow = TimeAmount.milliseconds(20)
    /// A bcrypt hash to verify against when the account does not exist, so a missing account
    /// takes as long to refuse as a wrong password.
    let dummyHash: String

    struct Committed {
        var message: StoredMessage
        var sender: Session?
        var requestID: RequestID?
    }

    init(store: Store, configuration: ServerConfiguration, loops: [any EventLoop], threadPool: NIOThreadPool, logger: Logger) throws {
        self.store = store
        self.configuration = configuration
        self.loops = loops
        self.threadPool = threadPool
        self.logger = logger
        self.loopOutboxes = loops.map { _ in LoopOutboxBox() }
        let (groups, nextID) = try store.loadGroups()
        let accounts = try store.accountNames()
        let last = store.commits.lastMessageID
        self.state = Mutex(HubState(accounts: accounts, directory: GroupDirectory(groups: groups, nextID: nextID), lastDispatched: last, loopCount: loops.count))
        self.dummyHash = Bcrypt.hash("parley-dummy-password", cost: configuration.bcryptCost)
        store.commits.setAfterBatch { [weak self] in self?.dispatchCommitted() }
    }

    var limits: Limits { configuration.limits }

    func loopIndex(of loop: any EventLoop) -> Int {
        loops.firstIndex { $0 === loop } ?? 0
    }

    /// Runs blocking `body` on the thread pool; the future completes on `loop`.
    func offload<T: Sendable>(on loop: any EventLoop, _ body: @escaping @Sendable () throws -> T) -> EventLoopFuture<T> {
        threadPool.runIfActive(eventLoop: loop, body)
    }

    // MARK: Delivery

    /// Sends `frame` (encoded once) to every session of the given user keys.
    func notify(_ frame: ServerFrame, users: some Sequence<String>) {
        let parts = state.withLock { s in s.partition(users.flatMap { s.online[$0] ?? [] }) }
        guard parts.contains(where: { !$0.isEmpty }) else { return }
        let buffer = frame.frame(allocator: allocator)
        enqueue(parts.map { $0.isEmpty ? [] : [Fanout(shared: buffer, messageID: 0, recipients: $0)] }, finished: [])
    }

    /// Tells everyone (except the user's own sessions) that `identity` came online or went
    /// offline. Changes are gathered for ``presenceWindow`` and sent together, so a crowd
    /// logging in costs one write per session per window instead of one per login.
    func broadcastPresence(of identity: Identity, online: Bool) {
        var frame = ServerFrame(type: "presence")
        frame.username = identity.name
        frame.online = online
        let buffer = frame.frame(allocator: allocator)
        let schedule = presence.withLock { p in
            p.pending.append((buffer, identity.key))
            defer { p.scheduled = true }
            return !p.scheduled
        }
        if schedule, let loop = loops.first {
            loop.scheduleTask(in: Self.presenceWindow) { self.flushPresence() }
        }
    }

    func flushPresence() {
        let pending = presence.withLock { p in
            defer { p.pending = []; p.scheduled = false }
            return p.pending
        }
        let parts = state.withLock { $0.sessionsByLoop(in: .general) }
        enqueue(parts.map { sessions in
            sessions.isEmpty ? [] : pending.map { Fanout(shared: $0.buffer, messageID: 0, recipients: sessions, skipUser: $0.user) }
        }, finished: [])
    }

    /// Runs on the commit queue's thread after each batch: works out the recipients of every
    /// message just stored, encodes each message once, and hands the writes to the event loops.
    func dispatchCommitted() {
        let batch = committed.withLock { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        guard !batch.isEmpty else { return }
        // Recipients come from snapshots already split by event loop, so this thread does
        // work per message and loop, not per recipient; the loops do the per-recipient writes.
        let recipients: [[[Session]]] = state.withLock { s in
            let lists = batch.map { s.sessionsByLoop(in: $0.message.room) }
            s.lastDispatched = max(s.lastDispatched, batch.last!.message.id)
            return lists
        }
        let loopCount = max(loops.count, 1)
        var byLoop = Array(repeating: [Fanout](), count: loopCount)
        var finished = Array(repeating: [Session](), count: loopCount)
        for (item, parts) in zip(batch, recipients) {
            let shared = ServerFrame.messageFrame(item.message, allocator: allocator)
            let ack = item.sender.map { _ in ServerFrame.messageFrame(item.message, id: item.requestID, allocator: allocator) }
            for (index, sessions) in parts.enumerated() {
                let sender = item.sender?.loopIndex == index ? item.sender : nil
                guard !sessions.isEmpty || sender != nil else { continue }
                byLoop[index].append(Fanout(shared: shared, ack: ack, sender: sender, messageID: item.message.id, recipients: sessions))
            }
            if let sender = item.sender { finished[sender.loopIndex].append(sender) }
        }
        enqueue(byLoop, finished: finished)
    }

    /// Hands each loop its fan-out (indexed like `loops`) and the senders whose backlog to count
    /// down there. At most one `execute` is in flight per loop: what arrives while one is pending
    /// joins it.
    func enqueue(_ byLoop: [[Fanout]], finished: [[Session]]) {
        for index in byLoop.indices {
            let senders = index < finished.count ? finished[index] : []
            guard !byLoop[index].isEmpty || !senders.isEmpty else { continue }
            let schedule = loopOutboxes[index].state.withLock { outbox in
                outbox.items += byLoop[index]
                outbox.finished += senders
                defer { outbox.scheduled = true }
                return !outbox.scheduled
            }
            if schedule {
                let outbox = loopOutboxes[index]
                loops[index].execute {
                    let (items, senders) = outbox.state.withLock { outbox in
                        defer { outbox = LoopOutbox() }
                        return (outbox.items, outbox.finished)
                    }
                    Self.write(items, finished: senders)
                }
            }
        }
    }

    /// Fan-out waiting for one event loop. While a loop is busy writing one batch, the next
    /// batches gather here and go out together: one write per session for all of them, so a
    /// busy server makes fewer, larger writes, and an idle one adds no delay.
    struct LoopOutbox {
        var items: [Fanout] = []
        var finished: [Session] = []
        var scheduled = false
    }

    /// A ``LoopOutbox`` behind a lock. Thread safety: `Sendable`; all access goes through `state`.
    final class LoopOutboxBox: Sendable {
        let state = Mutex(LoopOutbox())
    }

    /// One frame for the recipients on one loop. For a chat message, `sender` is set on the
    /// sender's loop only and gets `ack` instead; `skipUser` leaves out one user's sessions
    /// (nobody is told of their own presence).
    struct Fanout {
        var shared: ByteBuffer
        var ack: ByteBuffer? = nil
        var sender: Session? = nil
        var messageID: Int64
        var recipients: [Session]
        var skipUser: String? = nil
    }

    /// On one loop: every recipient gets the shared frame (the sender its acknowledgement, even
    /// if it is no longer a recipient), then each session is flushed once.
    static func write(_ items: [Fanout], finished: [Session]) {
        var owed: [Session] = []
        for item in items {
            var acknowledged = item.sender == nil
            for session in item.recipients {
                if let skip = item.skipUser, session.identity.key == skip { continue }
                let buffer: ByteBuffer
                if !acknowledged && session === item.sender {
                    acknowledged = true
                    buffer = item.ack!
                } else {
                    buffer = item.shared
                }
                if session.enqueue(buffer, messageID: item.messageID) { owed.append(session) }
            }
            if !acknowledged, let sender = item.sender, sender.enqueue(item.ack!, messageID: 0) {
                owed.append(sender)
            }
        }
        for session in owed { session.flush() }
        for sender in finished { sender.sendFinished() }
    }

}

/// The hub's mutable state.
/// Thread safety: not thread-safe by itself; only ever touched inside `Hub.state`'s `Mutex`.
struct HubState {
    /// Registered accounts: key → name as registered.
    var accounts: [String: String]
    var directory: GroupDirectory
    /// The highest message id handed to the event loops.
    var lastDispatched: Int64
    /// Online users: key → sessions, oldest first.
    var online: [String: [Session]] = [:]
    /// Every logged-in session: the general room's snapshot (copy-on-write).
    var everyone: [Session] = []
    /// Event loops in the server; snapshots are split by loop.
    let loopCount: Int
    /// The general room's sessions split by loop, rebuilt on demand after any change.
    var everyoneByLoop: [[Session]]? = nil
    /// Each group's online member sessions split by loop, rebuilt on demand after any change.
    var groupSessions: [Int64: [[Session]]] = [:]
    /// The highest message id each user has been sent, kept after their last session ends.
    var lastRead: [String: Int64] = [:]
    var throttle = LoginThrottle()
    var shuttingDown = false

    /// The sessions that receive a message in `room`, split by event loop index.
    mutating func sessionsByLoop(in room: Room) -> [[Session]] {
        switch room {
        case .general:
            if let cached = everyoneByLoop { return cached }
            let parts = partition(everyone)
            everyoneByLoop = parts
            return parts
        case .group(let id):
            if let cached = groupSessions[id] { return cached }
            guard let group = directory.group(id: id) else { return partition([]) }
            let parts = partition(group.members.flatMap { online[$0] ?? [] })
            groupSessions[id] = parts
            return parts
        case .direct(let a, let b):
            let first = online[Self.userKey(a)] ?? []
            return partition(a == b ? first : first + (online[Self.userKey(b)] ?? []))
        }
    }

    func partition(_ sessions: [Session]) -> [[Session]] {
        var parts = Array(repeating: [Session](), count: max(loopCount, 1))
        for session in sessions { parts[session.loopIndex].append(session) }
        return parts
    }

    /// A storage key without a guest's `~`.
    static func userKey(_ storageKey: String) -> String {
        storageKey.hasPrefix("~") ? String(storageKey.dropFirst()) : storageKey
    }

    /// Whether `key` is an account or an online user.
    func isTaken(_ key: String) -> Bool { accounts[key] != nil || online[key] != nil }

    /// Drops the split snapshots after a presence or membership change.
    mutating func invalidateSnapshots() {
        everyoneByLoop = nil
        groupSessions.removeAll(keepingCapacity: true)
    }
}
