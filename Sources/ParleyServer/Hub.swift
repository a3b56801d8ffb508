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
        let (groups, nextID) = try store.loadGroups()
        let accounts = try store.accountNames()
        let last = store.commits.lastMessageID
        self.state = Mutex(HubState(accounts: accounts, directory: GroupDirectory(groups: groups, nextID: nextID), lastDispatched: last))
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

    /// One frame for one session.
    struct Delivery {
        var session: Session
        var buffer: ByteBuffer
        var messageID: Int64
    }

    /// Writes each delivery on its session's loop: one hop per loop, one flush per session.
    func dispatch(_ deliveries: [Delivery]) {
        guard !deliveries.isEmpty else { return }
        var byLoop = Array(repeating: [Delivery](), count: max(loops.count, 1))
        for d in deliveries { byLoop[d.session.loopIndex].append(d) }
        for items in byLoop where !items.isEmpty {
            items[0].session.loop.execute { Self.write(items) }
        }
    }

    /// On one loop: enqueue every frame, then flush each session once.
    static func write(_ items: [Delivery]) {
        var owed: [Session] = []
        for item in items where item.session.enqueue(item.buffer, messageID: item.messageID) {
            owed.append(item.session)
        }
        for session in owed { session.flush() }
    }

    /// Sends `frame` (encoded once) to every session of the given user keys.
    func notify(_ frame: ServerFrame, users: some Sequence<String>, except: Session? = nil) {
        let sessions = state.withLock { s in users.flatMap { s.online[$0] ?? [] } }
        notify(frame, sessions: sessions, except: except)
    }

    func notify(_ frame: ServerFrame, sessions: [Session], except: Session? = nil) {
        guard !sessions.isEmpty else { return }
        let buffer = frame.frame(allocator: allocator)
        dispatch(sessions.compactMap { $0 === except ? nil : Delivery(session: $0, buffer: buffer, messageID: 0) })
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
        let everyone = state.withLock { $0.everyone }
        var deliveries: [Delivery] = []
        deliveries.reserveCapacity(everyone.count * pending.count)
        for session in everyone {
            for change in pending where change.user != session.identity.key {
                deliveries.append(Delivery(session: session, buffer: change.buffer, messageID: 0))
            }
        }
        dispatch(deliveries)
    }

    /// Runs on the commit queue's thread after each batch: works out the recipients of every
    /// message just stored, encodes each message once, and hands the writes to the event loops.
    func dispatchCommitted() {
        let batch = committed.withLock { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        guard !batch.isEmpty else { return }
        let recipients: [[Session]] = state.withLock { s in
            let lists = batch.map { s.sessions(in: $0.message.room) }
            s.lastDispatched = max(s.lastDispatched, batch.last!.message.id)
            return lists
        }
        var byLoop = Array(repeating: [Delivery](), count: max(loops.count, 1))
        for (item, sessions) in zip(batch, recipients) {
            let id = item.message.id
            let shared = ServerFrame.messageFrame(item.message, allocator: allocator)
            var ackSent = item.sender == nil
            for session in sessions {
                if session === item.sender {
                    ackSent = true
                    byLoop[session.loopIndex].append(Delivery(session: session, buffer: ack(item), messageID: id))
                } else {
                    byLoop[session.loopIndex].append(Delivery(session: session, buffer: shared, messageID: id))
                }
            }
            if !ackSent, let sender = item.sender {
                byLoop[sender.loopIndex].append(Delivery(session: sender, buffer: ack(item), messageID: 0))
            }
        }
        // Each sender's backlog is counted down on its own loop, in the same hop as the writes.
        var finished = Array(repeating: [Session](), count: byLoop.count)
        for sender in batch.compactMap(\.sender) { finished[sender.loopIndex].append(sender) }
        for (items, senders) in zip(byLoop, finished) where !items.isEmpty || !senders.isEmpty {
            let loop = (items.first?.session ?? senders[0]).loop
            loop.execute {
                Self.write(items)
                for sender in senders { sender.sendFinished() }
            }
        }
    }

    private func ack(_ item: Committed) -> ByteBuffer {
        ServerFrame.messageFrame(item.message, id: item.requestID, allocator: allocator)
    }
}

/// The hub's mutable state, guarded by its lock.
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
    /// Per-group snapshot of member sessions, rebuilt on demand after any change.
    var groupSessions: [Int64: [Session]] = [:]
    /// The highest message id each user has been sent, kept after their last session ends.
    var lastRead: [String: Int64] = [:]
    var throttle = LoginThrottle()
    var shuttingDown = false

    mutating func sessions(in room: Room) -> [Session] {
        switch room {
        case .general:
            return everyone
        case .group(let id):
            if let cached = groupSessions[id] { return cached }
            guard let group = directory.group(id: id) else { return [] }
            let list = group.members.flatMap { online[$0] ?? [] }
            groupSessions[id] = list
            return list
        case .direct(let a, let b):
            let first = online[Self.userKey(a)] ?? []
            return a == b ? first : first + (online[Self.userKey(b)] ?? [])
        }
    }

    /// A storage key without a guest's `~`.
    static func userKey(_ storageKey: String) -> String {
        storageKey.hasPrefix("~") ? String(storageKey.dropFirst()) : storageKey
    }

    /// Whether `key` is an account or an online user.
    func isTaken(_ key: String) -> Bool { accounts[key] != nil || online[key] != nil }

    mutating func invalidateGroups() { groupSessions.removeAll(keepingCapacity: true) }
}
