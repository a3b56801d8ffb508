import Foundation
import ParleyCore
import ParleyStore

/// One operator command, as `parley admin` and the server's console type it. Both parse the same
/// words with ``parse(_:)``, so a command means the same everywhere; the classroom spellings
/// (`ACTIVE USERS`, `DELETE CHAT BACKUP`, `EXIT`, any case) are aliases.
/// Thread safety: a value type; `Sendable`.
public enum AdminCommand: Sendable, Hashable {
    case help
    case online
    case stats
    case kick(user: String, reason: String)
    /// `duration` in seconds; nil for a ban without end.
    case ban(user: String, duration: Double?, reason: String)
    case banAddress(range: String, duration: Double?, reason: String)
    case unban(user: String)
    case unbanAddress(range: String)
    case bans
    case notice(String)
    /// nil shows the welcome message; `reset` goes back to the configured one.
    case motd(String?, reset: Bool)
    /// `conversation`: `general`, a group's name, or `USER1,USER2`; nil for every conversation.
    case deleteHistory(conversation: String?, before: Timestamp?, confirmed: Bool)
    case export(conversation: String?, from: Timestamp?, before: Timestamp?, format: ExportFormat, output: String?)
    case backup(path: String)
    /// nil `password`: one is generated and shown once.
    case resetPassword(user: String, password: String?)
    case shutdown
    case reload

    /// How `export` writes messages.
    public enum ExportFormat: String, Sendable, Hashable {
        /// A readable transcript, one line per message (continuation lines indented).
        case text
        /// One JSON object per message, as in the protocol's `history` reply.
        case jsonl
    }

    /// A command line that cannot be understood; `description` says why and how to write it.
    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// Every command, its words and what it does (for `help`).
    public static let usage: [(String, String)] = [
        ("help", "this list"),
        ("online  (also: active users)", "who is online, with their sessions"),
        ("stats", "connections, users, accounts, groups, messages, database size, uptime, version"),
        ("kick USER [REASON]", "close every session of USER, telling them who and why"),
        ("ban USER [--for DURATION] [REASON]", "refuse USER's logins (for 30m, 12h, 7d... or for good) and close their sessions"),
        ("ban --address CIDR [--for DURATION] [REASON]", "refuse connections from an address range"),
        ("unban USER | unban --address CIDR", "lift a ban"),
        ("bans", "the bans in force"),
        ("notice TEXT", "a system notice to everyone online"),
        ("motd [TEXT | --reset]", "show or set the welcome message shown at login"),
        ("delete-history [--conversation general|GROUP|USER1,USER2] [--before DATE] [--yes]  (also: delete chat backup)",
         "delete stored messages: exactly those named, or all"),
        ("export [--conversation C] [--date YYYY-MM-DD | --since DATE] [--format text|jsonl] [--output FILE]",
         "stored messages as a transcript or JSON lines"),
        ("backup FILE", "a consistent copy of the database, taken while the server runs"),
        ("reset-password USER [--password PASSWORD]", "set a new password (generated unless given) and revoke USER's login tokens"),
        ("reload", "re-read the TLS certificate and key"),
        ("shutdown  (also: exit)", "stop the server gracefully"),
    ]

    /// Splits a console line into words: blanks separate, `"…"` and `'…'` quote, `\` escapes.
    public static func words(_ line: String) -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character? = nil
        var escaped = false
        for c in line {
            if escaped {
                current.append(c)
                escaped = false
            } else if c == "\\" && quote != "'" {
                escaped = true
                inWord = true
            } else if let q = quote {
                if c == q { quote = nil } else { current.append(c) }
            } else if c == "\"" || c == "'" {
                quote = c
                inWord = true
            } else if c.isWhitespace {
                if inWord { words.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(c)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }

    /// Parses a command's words (`["kick", "alice", "spamming"]`).
    /// - Throws: ``Invalid`` naming what is wrong.
    public static func parse(_ words: [String]) throws(Invalid) -> AdminCommand {
        guard let first = words.first else { throw Invalid("no command; type help") }
        let lowered = words.map { $0.lowercased() }
        // The classroom server's spellings.
        if lowered == ["active", "users"] { return .online }
        if lowered == ["delete", "chat", "backup"] { return .deleteHistory(conversation: nil, before: nil, confirmed: false) }
        if lowered == ["exit"] || lowered == ["quit"] { return .shutdown }
        var rest = Array(words.dropFirst())
        switch first.lowercased() {
        case "help", "?": return .help
        case "online", "who": try noMore(rest, "online"); return .online
        case "stats": try noMore(rest, "stats"); return .stats
        case "bans": try noMore(rest, "bans"); return .bans
        case "shutdown": try noMore(rest, "shutdown"); return .shutdown
        case "reload": try noMore(rest, "reload"); return .reload
        case "kick":
            guard let user = rest.first, !user.hasPrefix("--") else { throw Invalid("usage: kick USER [REASON]") }
            return .kick(user: user, reason: rest.dropFirst().joined(separator: " "))
        case "ban":
            let duration = try option("--for", &rest).map { text throws(Invalid) in try Self.duration(text) }
            if let range = try option("--address", &rest) {
                guard AddressRange(range) != nil else { throw Invalid("'\(range)' is not an address or CIDR range (203.0.113.0/24, 2001:db8::/32)") }
                return .banAddress(range: range, duration: duration, reason: rest.joined(separator: " "))
            }
            guard let user = rest.first, !user.hasPrefix("--") else { throw Invalid("usage: ban USER [--for DURATION] [REASON], or ban --address CIDR") }
            return .ban(user: user, duration: duration, reason: rest.dropFirst().joined(separator: " "))
        case "unban":
            if let range = try option("--address", &rest) {
                guard AddressRange(range) != nil else { throw Invalid("'\(range)' is not an address or CIDR range") }
                return .unbanAddress(range: range)
            }
            guard rest.count == 1, !rest[0].hasPrefix("--") else { throw Invalid("usage: unban USER, or unban --address CIDR") }
            return .unban(user: rest[0])
        case "notice":
            let text = rest.joined(separator: " ")
            guard !text.isEmpty else { throw Invalid("usage: notice TEXT") }
            return .notice(text)
        case "motd":
            if rest == ["--reset"] { return .motd(nil, reset: true) }
            return .motd(rest.isEmpty ? nil : rest.joined(separator: " "), reset: false)
        case "delete-history":
            let confirmed = flag("--yes", &rest)
            let conversation = try option("--conversation", &rest)
            let before = try option("--before", &rest).map { text throws(Invalid) in try Self.time(text, "--before") }
            try noMore(rest, "delete-history")
            return .deleteHistory(conversation: conversation, before: before, confirmed: confirmed)
        case "export":
            let conversation = try option("--conversation", &rest)
            let date = try option("--date", &rest)
            let since = try option("--since", &rest)
            let formatName = try option("--format", &rest) ?? "text"
            let output = try option("--output", &rest)
            try noMore(rest, "export")
            guard let format = ExportFormat(rawValue: formatName) else { throw Invalid("--format is text or jsonl, not '\(formatName)'") }
            if date != nil && since != nil { throw Invalid("give --date or --since, not both") }
            var from: Timestamp? = nil
            var before: Timestamp? = nil
            if let date {
                let day = try Self.time(date, "--date")
                guard date.count == 10 else { throw Invalid("--date is a day, YYYY-MM-DD") }
                from = day
                before = Timestamp(milliseconds: day.milliseconds + 86_400_000)
            }
            if let since { from = try Self.time(since, "--since") }
            return .export(conversation: conversation, from: from, before: before, format: format, output: output)
        case "backup":
            guard rest.count == 1, !rest[0].hasPrefix("--") else { throw Invalid("usage: backup FILE") }
            return .backup(path: rest[0])
        case "reset-password":
            let password = try option("--password", &rest)
            guard rest.count == 1, !rest[0].hasPrefix("--") else { throw Invalid("usage: reset-password USER [--password PASSWORD]") }
            return .resetPassword(user: rest[0], password: password)
        default:
            throw Invalid("unknown command '\(first)'; type help")
        }
    }

    /// Whether this command changes nothing (shown in logs at a lower level).
    public var isReadOnly: Bool {
        switch self {
        case .help, .online, .stats, .bans, .export, .backup: return true
        case .motd(let text, let reset): return text == nil && !reset
        default: return false
        }
    }

    /// The command's name, for logs (no arguments: they may hold a password).
    public var name: String {
        switch self {
        case .help: "help"
        case .online: "online"
        case .stats: "stats"
        case .kick: "kick"
        case .ban, .banAddress: "ban"
        case .unban, .unbanAddress: "unban"
        case .bans: "bans"
        case .notice: "notice"
        case .motd: "motd"
        case .deleteHistory: "delete-history"
        case .export: "export"
        case .backup: "backup"
        case .resetPassword: "reset-password"
        case .shutdown: "shutdown"
        case .reload: "reload"
        }
    }

    private static func noMore(_ rest: [String], _ command: String) throws(Invalid) {
        if let extra = rest.first { throw Invalid("\(command): unexpected '\(extra)'") }
    }

    private static func flag(_ name: String, _ rest: inout [String]) -> Bool {
        guard let index = rest.firstIndex(of: name) else { return false }
        rest.remove(at: index)
        return true
    }

    private static func option(_ name: String, _ rest: inout [String]) throws(Invalid) -> String? {
        if let index = rest.firstIndex(where: { $0.hasPrefix(name + "=") }) {
            let value = String(rest[index].dropFirst(name.count + 1))
            rest.remove(at: index)
            return value
        }
        guard let index = rest.firstIndex(of: name) else { return nil }
        guard index + 1 < rest.count else { throw Invalid("\(name) needs a value") }
        let value = rest[index + 1]
        rest.removeSubrange(index...(index + 1))
        return value
    }

    /// `90s`, `30m`, `12h`, `7d`, `2w`, or several (`1h30m`), in seconds.
    public static func duration(_ text: String) throws(Invalid) -> Double {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800]
        var total = 0.0
        var number = ""
        for c in text.lowercased() {
            if c.isNumber || c == "." {
                number.append(c)
            } else if let unit = units[c], let n = Double(number) {
                total += n * unit
                number = ""
            } else {
                throw Invalid("'\(text)' is not a duration: use 90s, 30m, 12h, 7d, 2w or 1h30m")
            }
        }
        guard number.isEmpty, total > 0 else { throw Invalid("'\(text)' is not a duration: use 90s, 30m, 12h, 7d, 2w or 1h30m") }
        // Past this a ban is for good; leave --for out for that.
        guard total <= 100 * 365 * 86_400 else { throw Invalid("'\(text)' is longer than 100 years: leave --for out for a ban without end") }
        return total
    }

    /// `YYYY-MM-DD` (midnight UTC) or an ISO 8601 time (`2026-12-04T10:00:00Z`).
    public static func time(_ text: String, _ option: String) throws(Invalid) -> Timestamp {
        let full = ISO8601DateFormatter()
        if let date = full.date(from: text) { return Timestamp(milliseconds: Int64(date.timeIntervalSince1970 * 1000)) }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        if text.count == 10, let date = day.date(from: text) { return Timestamp(milliseconds: Int64(date.timeIntervalSince1970 * 1000)) }
        throw Invalid("\(option) is a date (YYYY-MM-DD) or a time (2026-12-04T10:00:00Z), not '\(text)'")
    }
}
