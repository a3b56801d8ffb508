import Foundation
import HummingbirdBcrypt
import Logging
import NIOCore
import NIOPosix
import ParleyCore
import ParleyStore
import Synchronization

/// The chat hub: who is online, the groups, presence, and the fan-out of every event to its
/// recipients. It speaks the domain only: commands in (send, history, group changes, who, follow),
/// ``Event``s out through each session's ``SessionSink``; no wire format, no NIO channel.
///
/// Decisions are made under one short lock (``HubState``) and return what to do; the doing
/// (storage, encoding, writes) happens after the lock is released. Messages are delivered only
/// after the commit queue has stored them; each event is encoded once per wire format in use and
/// handed to each event loop in one hop per batch (see docs/ARCHITECTURE.md).
/// Thread safety: `Sendable`; every method may be called from any thread unless it says it runs
/// on a session's loop. Blocking work (bcrypt, reads) runs on `threadPool`, never on an event loop.
public final class Hub: Sendable {
    let storage: any Storage
    let commits: CommitQueue
    let configuration: ServerConfiguration
    let loops: [any EventLoop]
    let threadPool: NIOThreadPool
    /// bcrypt work, on its own bounded pool.
    let passwords: PasswordChecks
    let logger: Logger
    /// What the server counts (messages, deliveries, logins, errors...).
    let metrics: ServerMetrics
    let state: Locked<HubState>
    /// One encoder per wire format, indexed by ``WireFormat/index``.
    let encoders: [any EventEncoder]
    /// Messages committed in the current batch, waiting for ``dispatchCommitted()``.
    let committed = Locked<[Committed]>([])
    let allocator = ByteBufferAllocator()
    let nextSessionID = Atomic<Int>(1)
    /// Per event loop, the work waiting for it (indexed like `loops`): chat messages, group
    /// events and presence all go out this one way.
    let loopQueues: [LoopQueueBox]
    /// Senders whose reading is paused until the commit backlog halves.
    let waitingForStorage = Locked<[Session]>([])
    /// Group commands, one at a time (decided, stored, then applied: see ``groupCommand(_:from:)``).
    let groupChanges = SerialJobs()
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

    /// - Throws: when the accounts or groups cannot be read.
    init(storage: any Storage, commits: CommitQueue, configuration: ServerConfiguration, loops: [any EventLoop],
         threadPool: NIOThreadPool, passwords: PasswordChecks, encoders: [any EventEncoder], logger: Logger,
         metrics: ServerMetrics = ServerMetrics()) throws {
        self.storage = storage
        self.commits = commits
        self.configuration = configuration
        self.loops = loops
        self.threadPool = threadPool
        self.passwords = passwords
        self.encoders = encoders
        self.logger = logger
        self.metrics = metrics
        self.loopQueues = loops.map { _ in LoopQueueBox() }
        let (groups, nextID) = try storage.loadGroups()
        let accounts = try storage.accountNames()
        self.state = Locked(HubState(
            accounts: accounts, directory: GroupDirectory(groups: groups, nextID: nextID), fanOutPosition: commits.lastMessageID,
            loopCount: loops.count, formatCount: encoders.count, presenceThreshold: configuration.presenceThreshold,
            loginBackoff: configuration.loginBackoff))
        let bans = try storage.bans()
        let motd = try storage.setting(Self.motdSetting) ?? configuration.motd
        state.withLock { s in
            s.motd = motd
            for ban in bans { if case .account(let key) = ban.target { s.bans[key] = ban } }
        }
        self.dummyHash = Bcrypt.hash("parley-dummy-password", cost: configuration.bcryptCost)
        commits.setAfterBatch { [weak self] in self?.dispatchCommitted() }
    }

    var limits: Limits { configuration.limits }

    func loopIndex(of loop: any EventLoop) -> Int {
        loops.firstIndex { $0 === loop } ?? 0
    }

    /// Runs blocking `body` on the thread pool; the future completes on `loop` (failing with
    /// `SERVER_SHUTTING_DOWN` once the pool has stopped).
    func offload<T: Sendable>(on loop: any EventLoop, _ body: @escaping @Sendable () throws -> T) -> EventLoopFuture<T> {
        threadPool.runIfActive(eventLoop: loop, body).flatMapErrorThrowing { error in throw ParleyError.stopped(error) }
    }

    // MARK: Encoding

    /// `event` encoded once for each wire format that has sessions (an empty buffer for the others).
    func encode(_ event: Event, formats inUse: [Bool]) -> [ByteBuffer] {
        encoders.indices.map { inUse[$0] ? encoders[$0].encode(event, allocator: allocator) : ByteBuffer() }
    }

    // MARK: Delivery

    /// Sends `event` (encoded once per format) to every session of the given user keys.
    func notify(_ event: Event, users: some Sequence<String>) {
        let keys = Array(users)
        let (parts, inUse) = state.withLock { s in (s.partition(keys.flatMap { s.users[$0]?.sessions ?? [] }), s.formatsInUse) }
        guard parts.contains(where: { !$0.isEmpty }) else { return }
        let encoded = encode(event, formats: inUse)
        enqueue(parts.map { $0.isEmpty ? [] : [.fanout(Fanout(encoded: encoded, messageID: 0, recipients: $0))] }, finished: [])
    }

    /// Runs on the commit queue's thread after each batch: works out the recipients of every
    /// message just stored, encodes each message once per format, and hands the writes to the loops.
    func dispatchCommitted() {
        // Senders paused for the backlog read on only after this batch's acknowledgements are
        // on their way.
        defer { resumeSenders() }
        let batch = committed.withLock { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        guard !batch.isEmpty else { return }
        // Recipients come from sets already split by event loop, so this thread does work per
        // message and loop, not per recipient; the loops do the per-recipient writes.
        let (recipients, inUse): ([[[Session]]], [Bool]) = state.withLock { s in
            let lists = batch.map { s.recipients(of: $0.message.room) }
            for item in batch {
                if case .direct(let a, let b) = item.message.room { s.notePartners(a, b) }
            }
            s.fanOutPosition = max(s.fanOutPosition, batch.last!.message.id)
            return (lists, s.formatsInUse)
        }
        metrics.messagesStored(batch, recipients: recipients)
        let loopCount = max(loops.count, 1)
        var byLoop = Array(repeating: [LoopWork](), count: loopCount)
        var finished = Array(repeating: [Session](), count: loopCount)
        for (item, parts) in zip(batch, recipients) {
            let encoded = encode(.message(item.message), formats: inUse)
            let ack = item.sender.map { $0.encoder.encodeAcknowledgement(item.message, id: item.requestID, allocator: allocator) }
            for (index, sessions) in parts.enumerated() {
                let sender = item.sender?.loopIndex == index ? item.sender : nil
                guard !sessions.isEmpty || sender != nil else { continue }
                byLoop[index].append(.fanout(Fanout(encoded: encoded, ack: ack, sender: sender, messageID: item.message.id, recipients: sessions)))
            }
            if let sender = item.sender { finished[sender.loopIndex].append(sender) }
        }
        enqueue(byLoop, finished: finished, waitBelow: Self.maxLoopBacklog)
    }

    /// Most pieces of work waiting for one loop before the commit queue's thread waits for it.
    static let maxLoopBacklog = 8192

    /// Hands each loop its work (indexed like `loops`) and the senders whose backlog to count
    /// down there. At most one `execute` is in flight per loop: what arrives while one is pending
    /// joins it.
    /// - Parameter waitBelow: with a bound (only on the commit queue's thread, never on a loop),
    ///   waits until every loop whose queue is over it has taken its work: a loop that cannot
    ///   keep up holds the commit queue back, whose bound in turn pauses the senders.
    func enqueue(_ byLoop: [[LoopWork]], finished: [[Session]], waitBelow bound: Int? = nil) {
        var waits: [DispatchSemaphore] = []
        for index in byLoop.indices {
            let senders = index < finished.count ? finished[index] : []
            guard !byLoop[index].isEmpty || !senders.isEmpty else { continue }
            let (schedule, wait) = loopQueues[index].state.withLock { queue -> (Bool, DispatchSemaphore?) in
                queue.work += byLoop[index]
                queue.finished += senders
                var wait: DispatchSemaphore? = nil
                if let bound, queue.work.count > bound {
                    wait = queue.taken ?? DispatchSemaphore(value: 0)
                    queue.taken = wait
                }
                defer { queue.scheduled = true }
                return (!queue.scheduled, wait)
            }
            if let wait { waits.append(wait) }
            if schedule {
                let queue = loopQueues[index]
                loops[index].execute {
                    let (work, senders, taken) = queue.state.withLock { queue in
                        defer { queue = LoopQueue() }
                        return (queue.work, queue.finished, queue.taken)
                    }
                    taken?.signal()
                    Self.write(work, finished: senders)
                }
            }
        }
        for wait in waits { wait.wait() }
    }

    /// Work waiting for one event loop. While a loop is busy writing one batch, the next
    /// batches gather here and go out together: one write per session for all of them, so a
    /// busy server makes fewer, larger writes, and an idle one adds no delay.
    struct LoopQueue {
        var work: [LoopWork] = []
        var finished: [Session] = []
        var scheduled = false
        /// Signalled when the loop takes the work (the commit queue's thread waits on it when
        /// the queue is over its bound).
        var taken: DispatchSemaphore? = nil
    }

    /// A ``LoopQueue`` behind a lock. Thread safety: `Sendable`; all access goes through `state`.
    final class LoopQueueBox: Sendable {
        let state = Locked(LoopQueue())
    }

    /// One piece of work for a loop: an event for many sessions, or bytes for one.
    enum LoopWork {
        case fanout(Fanout)
        case single(Session, ByteBuffer)
    }

    /// One event for the recipients on one loop, encoded per format. For a chat message,
    /// `sender` is set on the sender's loop only and gets `ack` instead.
    struct Fanout {
        var encoded: [ByteBuffer]
        var ack: ByteBuffer? = nil
        var sender: Session? = nil
        var messageID: Int64
        var recipients: [Session]
    }

    /// On one loop: every recipient gets the event in its format (the sender its acknowledgement,
    /// even if it is no longer a recipient), then each session is flushed once.
    static func write(_ work: [LoopWork], finished: [Session]) {
        var owed: [Session] = []
        for piece in work {
            switch piece {
            case .fanout(let item):
                var acknowledged = item.sender == nil
                for session in item.recipients {
                    let bytes: ByteBuffer
                    if !acknowledged && session === item.sender {
                        acknowledged = true
                        bytes = item.ack!
                    } else {
                        bytes = item.encoded[session.format]
                    }
                    if session.deliver(bytes, messageID: item.messageID) { owed.append(session) }
                }
                if !acknowledged, let sender = item.sender, sender.deliver(item.ack!, messageID: 0) {
                    owed.append(sender)
                }
            case .single(let session, let bytes):
                if session.deliver(bytes, messageID: 0) { owed.append(session) }
            }
        }
        for session in owed { session.flush() }
        for sender in finished { sender.sendFinished() }
    }
}
