import Foundation
import GRDB
import Logging
import ParleyCore

/// Parley's storage: accounts, groups, memberships, invitations, messages and read positions in
/// one SQLite file (WAL mode, through GRDB).
///
/// It implements every storage interface (``Storage``); no GRDB type is seen outside this module.
/// Reads are synchronous and may run on any thread except an event loop (use a thread pool).
/// Chat messages, group changes and read positions are written in batches by a ``CommitQueue``
/// through ``write(_:now:)``; account creation writes directly.
/// Thread safety: `Sendable`; GRDB's `DatabasePool` serialises writes and lets reads run concurrently.
public final class SQLiteStore: Storage {
    let pool: DatabasePool

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
                Account(key: $0["key"], name: $0["name"], passwordHash: $0["password_hash"], readPosition: $0["last_read"])
            }
        }
    }

    public func saveToken(hash: String, user: String, now: Timestamp, keep: Int) throws {
        try pool.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO login_token (hash, user, created_at, last_used) VALUES (?, ?, ?, ?)",
                arguments: [hash, user, now.milliseconds, now.milliseconds])
            try db.execute(
                sql: """
                    DELETE FROM login_token WHERE user = ? AND hash NOT IN
                    (SELECT hash FROM login_token WHERE user = ? ORDER BY last_used DESC LIMIT ?)
                    """,
                arguments: [user, user, keep])
        }
    }

    public func account(tokenHash: String, now: Timestamp, maxAge: Int64) throws -> Account? {
        let found = try pool.read { db in
            try Row.fetchOne(
                db,
                sql: """
                    SELECT a.key, a.name, a.password_hash, a.last_read, t.last_used FROM login_token t
                    JOIN account a ON a.key = t.user WHERE t.hash = ?
                    """,
                arguments: [tokenHash])
        }
        guard let row = found else { return nil }
        let lastUsed: Int64 = row["last_used"]
        if now.milliseconds - lastUsed > maxAge {
            try deleteToken(hash: tokenHash)
            return nil
        }
        // Marking it used costs a write; once a day is enough to keep it alive.
        if now.milliseconds - lastUsed > 86_400_000 {
            try pool.write { db in
                try db.execute(sql: "UPDATE login_token SET last_used = ? WHERE hash = ?", arguments: [now.milliseconds, tokenHash])
            }
        }
        return Account(key: row["key"], name: row["name"], passwordHash: row["password_hash"], readPosition: row["last_read"])
    }

    public func deleteTokens(user: String, except: String?) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM login_token WHERE user = ? AND hash <> ?", arguments: [user, except ?? ""])
        }
    }

    public func updatePassword(user: String, passwordHash: String) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE account SET password_hash = ? WHERE key = ?", arguments: [passwordHash, user])
        }
    }

    public func deleteToken(hash: String) throws {
        try pool.write { db in try db.execute(sql: "DELETE FROM login_token WHERE hash = ?", arguments: [hash]) }
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

    public func replayPlan(user: String, rooms: [Room], directs: Bool, after: Int64, through: Int64, perRoom: Int) throws -> ReplayPlan {
        var plan = ReplayPlan(through: through, starts: [:], done: after, truncated: [])
        guard through > after, perRoom > 0 else { return plan }
        return try pool.read { db in
            var all = rooms
            if directs {
                let keys = try String.fetchAll(db, sql: """
                    SELECT DISTINCT room FROM message WHERE peer_key = ? AND id > ? AND id <= ?
                    UNION SELECT DISTINCT room FROM message WHERE sender_key = ? AND peer_key IS NOT NULL AND id > ? AND id <= ?
                    """, arguments: [user, after, through, user, after, through])
                all += keys.compactMap(Room.init(storageKey:))
            }
            for room in all {
                // The newest message left out, if the room has more than `perRoom` missed.
                let cut = try Int64.fetchOne(db, sql: """
                    SELECT id FROM message WHERE room = ? AND id > ? AND id <= ? ORDER BY id DESC LIMIT 1 OFFSET ?
                    """, arguments: [room.storageKey, after, through, perRoom])
                plan.starts[room] = cut ?? after
                guard let cut, let first = try Row.fetchOne(db, sql: """
                    SELECT id, sender, sender_key, room_name FROM message WHERE room = ? AND id > ? ORDER BY id LIMIT 1
                    """, arguments: [room.storageKey, cut]) else { continue }
                let isPrivate: Bool
                if case .direct = room { isPrivate = true } else { isPrivate = false }
                let senderKey: String = first["sender_key"]
                let name: String = isPrivate && senderKey != user ? first["sender"] : first["room_name"]
                plan.truncated.append(.init(conversation: name, isPrivate: isPrivate, before: first["id"]))
            }
            return plan
        }
    }

    public func replayPage(_ plan: inout ReplayPlan, limit: Int) throws -> [StoredMessage] {
        guard plan.done < plan.through, limit > 0 else { return [] }
        let current = plan
        let (page, done) = try pool.read { db -> ([StoredMessage], Int64) in
            // The next `limit` ids of every conversation, then the smallest `limit` of them all:
            // every id up to the last one taken was a candidate, so the replay can go on from there.
            var ids: [Int64] = []
            for (room, start) in current.starts {
                ids += try Int64.fetchAll(db, sql: "SELECT id FROM message WHERE room = ? AND id > ? AND id <= ? ORDER BY id LIMIT ?",
                                          arguments: [room.storageKey, max(start, current.done), current.through, limit])
            }
            ids.sort()
            let taken = ids.prefix(limit)
            guard let last = taken.last else { return ([], current.through) }
            let list = taken.map(String.init).joined(separator: ",")
            let rows = try Row.fetchAll(db, sql: "SELECT \(Self.messageColumns) FROM message WHERE id IN (\(list)) ORDER BY id")
            return (rows.compactMap(Self.message), taken.count < limit ? current.through : last)
        }
        plan.done = done
        return page
    }

    /// The number of stored messages (for tests and operators).
    public func messageCount() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM message") ?? 0 }
    }

    public func conversationPartners(of user: String) throws -> [String] {
        try pool.read { db in
            let rooms = try String.fetchAll(
                db,
                sql: """
                    SELECT DISTINCT room FROM message WHERE peer_key = ?
                    UNION SELECT DISTINCT room FROM message WHERE sender_key = ? AND peer_key IS NOT NULL
                    """,
                arguments: [user, user])
            var partners = Set<String>()
            for key in rooms {
                guard case .direct(let a, let b)? = Room(storageKey: key) else { continue }
                let other = a == user ? b : a
                if !other.hasPrefix("~") && other != user { partners.insert(other) }
            }
            return partners.sorted()
        }
    }

    public func lastMessageID() throws -> Int64 {
        try pool.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM message") ?? 0 }
    }

    public func readPosition(of user: String) throws -> Int64 {
        try pool.read { db in try Int64.fetchOne(db, sql: "SELECT last_read FROM account WHERE key = ?", arguments: [user]) ?? 0 }
    }

    /// Closes the database; later calls fail.
    public func close() {
        try? pool.close()
    }

    // MARK: Batches

    public func write(_ batch: [WriteItem], now: Timestamp) throws -> [Int: any Error] {
        var groupErrors: [Int: any Error] = [:]
        try pool.write { db in
            let insert = try db.cachedStatement(sql: """
                INSERT INTO message (id, time, sender, sender_key, room, room_name, peer_key, text)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for (index, item) in batch.enumerated() {
                switch item {
                case .message(let m, let senderKey, let peerKey):
                    try insert.execute(arguments: [m.id, m.time.milliseconds, m.sender, senderKey, m.room.storageKey, m.roomName, peerKey, m.text])
                case .groups(let mutations):
                    do {
                        try db.inSavepoint {
                            for mutation in mutations { try Self.apply(mutation, db: db, now: now.milliseconds) }
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
        return groupErrors
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
