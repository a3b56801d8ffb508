import Foundation
import GRDB
import ParleyCore

/// What operators do to the SQLite store (`parley admin`).
extension SQLiteStore {
    public func bans() throws -> [Ban] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT kind, target, name, reason, banned_by, since, until FROM ban ORDER BY since").map { row in
                let kind: String = row["kind"]
                let target: String = row["target"]
                let until: Int64? = row["until"]
                return Ban(target: kind == "address" ? .address(target) : .account(target), name: row["name"], reason: row["reason"],
                           by: row["banned_by"], since: Timestamp(milliseconds: row["since"]), until: until.map(Timestamp.init(milliseconds:)))
            }
        }
    }

    public func saveBan(_ ban: Ban) throws {
        let (kind, target) = Self.columns(ban.target)
        try pool.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO ban (kind, target, name, reason, banned_by, since, until) VALUES (?, ?, ?, ?, ?, ?, ?)",
                arguments: [kind, target, ban.name, ban.reason, ban.by, ban.since.milliseconds, ban.until?.milliseconds])
        }
    }

    public func deleteBan(_ target: Ban.Target) throws -> Bool {
        let (kind, value) = Self.columns(target)
        return try pool.write { db in
            try db.execute(sql: "DELETE FROM ban WHERE kind = ? AND target = ?", arguments: [kind, value])
            return db.changesCount > 0
        }
    }

    private static func columns(_ target: Ban.Target) -> (String, String) {
        switch target {
        case .account(let key): return ("account", key)
        case .address(let range): return ("address", range)
        }
    }

    public func setting(_ name: String) throws -> String? {
        try pool.read { db in try String.fetchOne(db, sql: "SELECT value FROM setting WHERE name = ?", arguments: [name]) }
    }

    public func setSetting(_ name: String, to value: String?) throws {
        try pool.write { db in
            if let value {
                try db.execute(sql: "INSERT OR REPLACE INTO setting (name, value) VALUES (?, ?)", arguments: [name, value])
            } else {
                try db.execute(sql: "DELETE FROM setting WHERE name = ?", arguments: [name])
            }
        }
    }

    /// The `WHERE` clause (without the word) and its arguments for a selection.
    private static func filter(_ selection: MessageSelection) -> (String, StatementArguments) {
        var terms: [String] = []
        var arguments: StatementArguments = []
        if let room = selection.room {
            terms.append("room = ?")
            _ = arguments.append(contentsOf: [room.storageKey])
        }
        if let from = selection.from {
            terms.append("time >= ?")
            _ = arguments.append(contentsOf: [from.milliseconds])
        }
        if let before = selection.before {
            terms.append("time < ?")
            _ = arguments.append(contentsOf: [before.milliseconds])
        }
        return (terms.isEmpty ? "1" : terms.joined(separator: " AND "), arguments)
    }

    public func countMessages(_ selection: MessageSelection) throws -> Int {
        let (condition, arguments) = Self.filter(selection)
        return try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM message WHERE \(condition)", arguments: arguments) ?? 0 }
    }

    public func deleteMessages(_ selection: MessageSelection) throws -> Int {
        let (condition, arguments) = Self.filter(selection)
        return try pool.write { db in
            try db.execute(sql: "DELETE FROM message WHERE \(condition)", arguments: arguments)
            return db.changesCount
        }
    }

    public func messages(_ selection: MessageSelection, after: Int64, limit: Int) throws -> [StoredMessage] {
        let (condition, arguments) = Self.filter(selection)
        var all: StatementArguments = [after]
        _ = all.append(contentsOf: arguments)
        _ = all.append(contentsOf: [limit])
        return try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT \(Self.messageColumns) FROM message WHERE id > ? AND \(condition) ORDER BY id LIMIT ?",
                             arguments: all).compactMap(Self.message)
        }
    }

    public func statistics() throws -> StoreStatistics {
        let (accounts, groups, messages) = try pool.read { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM account") ?? 0,
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM room_group") ?? 0,
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM message") ?? 0)
        }
        let bytes = ["", "-wal"].reduce(Int64(0)) { sum, suffix in
            let size = (try? FileManager.default.attributesOfItem(atPath: pool.path + suffix)[.size] as? NSNumber)?.int64Value ?? 0
            return sum + size
        }
        return StoreStatistics(accounts: accounts, groups: groups, messages: messages, databaseBytes: bytes)
    }

    /// SQLite's online backup API, read from one snapshot: in WAL mode the read transaction does
    /// not stop writers, and the copy holds exactly what was committed when it began.
    public func backup(to path: String) throws {
        guard !FileManager.default.fileExists(atPath: path) else {
            throw CocoaError(.fileWriteFileExists, userInfo: [NSFilePathErrorKey: path])
        }
        let destination = try DatabaseQueue(path: path)
        do {
            try pool.backup(to: destination)
            try destination.close()
        } catch {
            try? destination.close()
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
    }
}
