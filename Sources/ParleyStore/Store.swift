import Foundation
import GRDB
import Logging
import ParleyCore

/// Parley's storage: accounts, groups, memberships, invitations, messages and read positions in
/// one SQLite file (WAL mode, through GRDB).
///
/// Reads are synchronous and may run on any thread except an event loop (use a thread pool).
/// Chat messages and group changes go through ``CommitQueue`` (group commit); account creation
/// writes directly. Thread safety: `Sendable`; GRDB's `DatabasePool` serialises writes and lets
/// reads run concurrently.
public final class Store: Sendable {
    public let pool: DatabasePool
    /// The group-commit queue for messages, group changes and read positions.
    public let commits: CommitQueue

    /// Opens (creating if needed) `parley.sqlite` in `directory` and migrates it to the current schema.
    /// - Throws: when the folder cannot be created or the database cannot be opened or migrated.
    public init(directory: String, durability: Durability = .normal, logger: Logger = Logger(label: "parley.store")) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var config = Configuration()
        config.busyMode = .timeout(10)
        let synchronous = durability == .full ? "FULL" : "NORMAL"
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
        }
        let path = (directory as NSString).appendingPathComponent("parley.sqlite")
        pool = try DatabasePool(path: path, configuration: config)
        try Schema.migrator.migrate(pool)
        let lastID = try pool.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM message") ?? 0 }
        commits = CommitQueue(pool: pool, lastMessageID: lastID, logger: logger)
    }

    // MARK: Accounts

    /// Creates an account. Returns false when the name (case-insensitively) is taken.
    public func createAccount(name: String, passwordHash: String, now: Timestamp) throws -> Bool {
        try pool.write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO account (key, name, password_hash, last_read, created_at) VALUES (?, ?, ?, 0, ?)",
                arguments: [Names.key(name), name, passwordHash, now.milliseconds])
            return db.changesCount == 1
        }
    }

    public func account(_ key: String) throws -> Account? {
        try pool.read { db in
            try Row.fetchOne(db, sql: "SELECT key, name, password_hash, last_read FROM account WHERE key = ?", arguments: [key]).map {
                Account(key: $0["key"], name: $0["name"], passwordHash: $0["password_hash"], lastRead: $0["last_read"])
            }
        }
    }

    /// Every account's key and display name.
    public func accountNames() throws -> [String: String] {
        try pool.read { db in
            var names: [String: String] = [:]
            let rows = try Row.fetchCursor(db, sql: "SELECT key, name FROM account")
            while let row = try rows.next() { names[row["key"]] = row["name"] }
            return names
        }
    }

    // MARK: Groups

    /// All groups with their members (longest-standing first) and invitations, and the next free group id.
    public func loadGroups() throws -> (groups: [Group], nextID: Int64) {
        try pool.read { db in
            var members: [Int64: [String]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT group_id, user FROM group_member ORDER BY seq") {
                members[row["group_id"], default: []].append(row["user"])
            }
            var invited: [Int64: Set<String>] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT group_id, user FROM group_invitation") {
                invited[row["group_id"], default: []].insert(row["user"])
            }
            let groups = try Row.fetchAll(db, sql: "SELECT id, name, owner, invite_only FROM room_group").map { row in
                let id: Int64 = row["id"]
                return Group(id: id, name: row["name"], owner: row["owner"], inviteOnly: row["invite_only"],
                             members: members[id] ?? [], invited: invited[id] ?? [])
            }
            let counter = try Int64.fetchOne(db, sql: "SELECT value FROM counter WHERE name = 'group_id'") ?? 0
            return (groups, counter + 1)
        }
    }

    // MARK: Messages

    static let messageColumns = "id, time, sender, room, room_name, text"

    static func message(_ row: Row) -> StoredMessage? {
        let key: String = row["room"]
        guard let room = Room(storageKey: key) else { return nil }
        return StoredMessage(id: row["id"], time: Timestamp(milliseconds: row["time"]), sender: row["sender"],
                             room: room, roomName: row["room_name"], text: row["text"])
    }

    /// Up to `limit` messages of `room` with ids below `before` (or the newest), oldest first.
    public func history(_ room: Room, before: Int64?, limit: Int) throws -> [StoredMessage] {
        try pool.read { db in
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT \(Self.messageColumns) FROM message WHERE room = ? AND id < ? ORDER BY id DESC LIMIT ?",
                arguments: [room.storageKey, before ?? Int64.max, limit])
            return rows.compactMap(Self.message).reversed()
        }
    }

    /// What `user` missed: messages with ids in (`after`, `through`] in the given rooms and in the
    /// user's private conversations, at most `perRoom` (the newest) per room, oldest first.
    public func missed(user: String, rooms: [Room], after: Int64, through: Int64, perRoom: Int, directs: Bool = true) throws -> [StoredMessage] {
        guard through > after, perRoom > 0 else { return [] }
        return try pool.read { db in
            var result: [StoredMessage] = []
            for room in rooms {
                let rows = try Row.fetchAll(
                    db,
                    sql: "SELECT \(Self.messageColumns) FROM message WHERE room = ? AND id > ? AND id <= ? ORDER BY id DESC LIMIT ?",
                    arguments: [room.storageKey, after, through, perRoom])
                result += rows.compactMap(Self.message)
            }
            guard directs else { return result.sorted { $0.id < $1.id } }
            var perDirect: [Room: Int] = [:]
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT \(Self.messageColumns) FROM message WHERE peer_key = ? AND id > ? AND id <= ?
                    UNION SELECT \(Self.messageColumns) FROM message WHERE sender_key = ? AND peer_key IS NOT NULL AND id > ? AND id <= ?
                    ORDER BY id DESC
                    """,
                arguments: [user, after, through, user, after, through])
            while let row = try rows.next() {
                guard let message = Self.message(row) else { continue }
                let count = perDirect[message.room, default: 0]
                if count < perRoom {
                    perDirect[message.room] = count + 1
                    result.append(message)
                }
            }
            return result.sorted { $0.id < $1.id }
        }
    }

    /// The number of stored messages (for tests and operators).
    public func messageCount() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM message") ?? 0 }
    }

    /// Waits until everything queued so far is committed, then stops accepting work.
    public func close() {
        commits.close()
    }
}

extension Room {
    /// Parses ``storageKey``.
    public init?(storageKey key: String) {
        if key == "general" {
            self = .general
        } else if key.hasPrefix("g:"), let id = Int64(key.dropFirst(2)) {
            self = .group(id: id)
        } else if key.hasPrefix("d:") {
            let parts = key.dropFirst(2).split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            self = .direct(String(parts[0]), String(parts[1]))
        } else {
            return nil
        }
    }
}
