import Dispatch
import Foundation
import ParleyCore
import ParleyStore
import Synchronization

/// A store that passes everything to SQLite, but fails every batch write while `failing` is set,
/// and, while `gateAccounts` is set, holds each `createAccount` until ``releaseAccounts()``
/// (announcing on ``accountEntered`` that one is waiting): tests force races with it.
/// Thread safety: `Sendable`; atomics and a semaphore.
public final class FailingStore: Storage {
    public let inner: SQLiteStore
    public let failing = Atomic<Bool>(false)
    public struct Injected: Error {}

    public init(directory: String) throws { inner = try SQLiteStore(directory: directory) }

    public func createAccount(name: String, passwordHash: String, now: Timestamp) throws -> Bool {
        if gateAccounts.load(ordering: .relaxed) {
            entered.yield(name)
            gate.wait()
        }
        return try inner.createAccount(name: name, passwordHash: passwordHash, now: now)
    }

    public let gateAccounts = Atomic<Bool>(false)
    private let gate = DispatchSemaphore(value: 0)
    private let (enteredStream, entered) = AsyncStream.makeStream(of: String.self)
    /// The names of accounts whose creation is being held.
    public var accountEntered: AsyncStream<String> { enteredStream }
    /// Lets one held `createAccount` go on.
    public func releaseAccounts() { gate.signal() }
    public func account(_ key: String) throws -> Account? { try inner.account(key) }
    public func accountNames() throws -> [String: String] { try inner.accountNames() }
    public func saveToken(hash: String, user: String, now: Timestamp, keep: Int) throws { try inner.saveToken(hash: hash, user: user, now: now, keep: keep) }
    public func account(tokenHash: String, now: Timestamp, maxAge: Int64) throws -> Account? { try inner.account(tokenHash: tokenHash, now: now, maxAge: maxAge) }
    public func deleteToken(hash: String) throws { try inner.deleteToken(hash: hash) }
    public func deleteTokens(user: String, except: String?) throws { try inner.deleteTokens(user: user, except: except) }
    public func updatePassword(user: String, passwordHash: String) throws { try inner.updatePassword(user: user, passwordHash: passwordHash) }
    public func loadGroups() throws -> (groups: [Group], nextID: Int64) { try inner.loadGroups() }
    public func history(_ room: Room, before: Int64?, limit: Int) throws -> [StoredMessage] { try inner.history(room, before: before, limit: limit) }
    public func replayPlan(user: String, rooms: [Room], directs: Bool, after: Int64, through: Int64, perRoom: Int) throws -> ReplayPlan {
        try inner.replayPlan(user: user, rooms: rooms, directs: directs, after: after, through: through, perRoom: perRoom)
    }
    public func replayPage(_ plan: inout ReplayPlan, limit: Int) throws -> [StoredMessage] { try inner.replayPage(&plan, limit: limit) }
    public func conversationPartners(of user: String) throws -> [String] { try inner.conversationPartners(of: user) }
    public func lastMessageID() throws -> Int64 { try inner.lastMessageID() }
    public func messageCount() throws -> Int { try inner.messageCount() }
    public func readPosition(of user: String) throws -> Int64 { try inner.readPosition(of: user) }
    public func bans() throws -> [Ban] { try inner.bans() }
    public func saveBan(_ ban: Ban) throws { try inner.saveBan(ban) }
    public func deleteBan(_ target: Ban.Target) throws -> Bool { try inner.deleteBan(target) }
    public func setting(_ name: String) throws -> String? { try inner.setting(name) }
    public func setSetting(_ name: String, to value: String?) throws { try inner.setSetting(name, to: value) }
    public func countMessages(_ selection: MessageSelection) throws -> Int { try inner.countMessages(selection) }
    public func deleteMessages(_ selection: MessageSelection) throws -> Int { try inner.deleteMessages(selection) }
    public func messages(_ selection: MessageSelection, after: Int64, limit: Int) throws -> [StoredMessage] {
        try inner.messages(selection, after: after, limit: limit)
    }
    public func statistics() throws -> StoreStatistics { try inner.statistics() }
    public func backup(to path: String) throws { try inner.backup(to: path) }
    public func write(_ batch: [WriteItem], now: Timestamp) throws -> [Int: any Error] {
        if failing.load(ordering: .relaxed) { throw Injected() }
        if let poison = poisonText.withLock({ $0 }), batch.contains(where: { if case .message(let m, _, _) = $0 { m.text == poison } else { false } }) {
            throw Injected()
        }
        writes.add(1, ordering: .relaxed)
        if holdWrites.load(ordering: .relaxed) {
            writeEntered.yield(batch.count)
            writeGate.wait()
        }
        return try inner.write(batch, now: now)
    }

    /// A batch holding a message with this text fails as a whole (as a bad row would).
    public let poisonText = Locked<String?>(nil)
    /// Batches written (not counting refused ones).
    public let writes = Atomic<Int>(0)
    /// While set, each batch write waits for ``releaseWrites()`` (announced on ``writeHeld``).
    public let holdWrites = Atomic<Bool>(false)
    private let writeGate = DispatchSemaphore(value: 0)
    private let (writeHeldStream, writeEntered) = AsyncStream.makeStream(of: Int.self)
    public var writeHeld: AsyncStream<Int> { writeHeldStream }
    public func releaseWrites() { writeGate.signal() }
}

