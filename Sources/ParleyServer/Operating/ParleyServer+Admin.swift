import Foundation
import HummingbirdBcrypt
import NIOCore
import ParleyCore
import ParleyStore
import ParleyWire

/// What an operator command answers: text for people and the same as JSON for scripts
/// (`parley admin --json`).
/// Thread safety: a value type; `Sendable`.
public struct AdminReply: Sendable {
    /// Lines for people.
    public var text: String
    /// A JSON document with the same content.
    public var json: String

    init(_ text: String, json: some Encodable) {
        self.text = text
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        self.json = (try? encoder.encode(json)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

/// An operator command that could not be carried out; `description` says why, for people.
public struct AdminError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// Set when the command needs a confirmation first: the question to ask (send it again
    /// confirmed, `--yes`, to go ahead).
    public var confirm: String?

    init(_ description: String, confirm: String? = nil) {
        self.description = description
        self.confirm = confirm
    }
}

/// Carries out operator commands (`parley admin`, the console) against the running server.
extension ParleyServer {
    /// The version `stats` and `--version` report.
    public static let version = "0.14.0"

    /// Carries out `command` for the operator `by`.
    /// - Parameter emit: receives what the command streams (an `export` without `--output`), in order.
    /// - Throws: ``AdminError`` saying why, for people.
    public func perform(_ command: AdminCommand, by: String, emit: @escaping @Sendable (String) async throws -> Void = { _ in })
        async throws -> AdminReply {
        if command.isReadOnly {
            logger.debug("admin command", metadata: ["command": "\(command.name)", "by": "\(by)"])
        } else {
            logger.notice("admin command", metadata: ["command": "\(command.name)", "by": "\(by)"])
        }
        let storage = self.storage
        switch command {
        case .help:
            let lines = AdminCommand.usage.map { command, help in
                command.count <= 40 ? command.padding(toLength: 42, withPad: " ", startingAt: 0) + help : command + "\n" + String(repeating: " ", count: 42) + help
            }
            return AdminReply(lines.joined(separator: "\n"), json: AdminCommand.usage.map { ["command": $0.0, "help": $0.1] })

        case .online:
            let entries = hub.onlineEntries()
            var lines = ["\(entries.count) user\(entries.count == 1 ? "" : "s") online"]
            for entry in entries {
                lines.append("\(entry.user)\(entry.guest ? " (guest)" : "")")
                for s in entry.sessions {
                    lines.append("  session \(s.session): \(s.transport) from \(s.address), since \(s.since), idle \(Self.span(Double(s.idle)))")
                }
            }
            return AdminReply(lines.joined(separator: "\n"), json: entries)

        case .stats:
            struct Stats: Encodable {
                var connections: [String: Int]
                var usersOnline: Int
                var sessions: Int
                var accounts: Int
                var groups: Int
                var messages: Int
                var databaseBytes: Int64
                var uptimeSeconds: Int
                var version: String
                var commitBacklog: Int
            }
            let store = try await threadPool.runIfActive { try storage.statistics() }
            let counts = hub.onlineCounts
            let stats = Stats(connections: connectionsByTransport(), usersOnline: counts.users, sessions: counts.sessions,
                              accounts: store.accounts, groups: store.groups, messages: store.messages,
                              databaseBytes: store.databaseBytes, uptimeSeconds: Int(Date().timeIntervalSince(startedAt)),
                              version: Self.version, commitBacklog: commitBacklog)
            let connections = stats.connections.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            let text = """
                connections: \(connections.isEmpty ? "none" : connections)
                users online: \(stats.usersOnline) (\(stats.sessions) sessions)
                accounts: \(stats.accounts)
                groups: \(stats.groups)
                messages stored: \(stats.messages)
                database size: \(Self.bytes(stats.databaseBytes))
                uptime: \(Self.span(Double(stats.uptimeSeconds)))
                version: \(stats.version)
                """
            return AdminReply(text, json: stats)

        case .kick(let user, let reason):
            let closed = hub.kick(user, reason: reason, by: by)
            guard closed > 0 else { throw AdminError("no one named '\(user)' is online") }
            return AdminReply("kicked \(user) (\(closed) session\(closed == 1 ? "" : "s") closed)", json: ["user": user, "sessions": "\(closed)"])

        case .ban(let user, let duration, let reason):
            guard let name = hub.accountName(user) else { throw AdminError("no account named '\(user)'") }
            let ban = try await storeBan(.account(Names.key(name)), name: name, duration: duration, reason: reason, by: by)
            let closed = hub.applyBan(ban)
            return AdminReply("banned \(name) \(Self.end(of: ban))\(closed > 0 ? "; \(closed) session\(closed == 1 ? "" : "s") closed" : "")",
                              json: BanEntry(ban))

        case .banAddress(let text, let duration, let reason):
            guard let range = AddressRange(text) else { throw AdminError("'\(text)' is not an address range") }
            let ban = try await storeBan(.address(range.description), name: range.description, duration: duration, reason: reason, by: by)
            let closed = applyAddressBan(range, ban)
            return AdminReply("banned connections from \(range) \(Self.end(of: ban))\(closed > 0 ? "; \(closed) connection\(closed == 1 ? "" : "s") closed" : "")",
                              json: BanEntry(ban))

        case .unban(let user):
            let key = Names.key(user)
            let lifted = try await threadPool.runIfActive { try storage.deleteBan(.account(key)) }
            hub.liftBan(key: key)
            guard lifted else { throw AdminError("'\(user)' is not banned") }
            return AdminReply("unbanned \(user)", json: ["user": user])

        case .unbanAddress(let text):
            guard let range = AddressRange(text) else { throw AdminError("'\(text)' is not an address range") }
            let lifted = try await threadPool.runIfActive { try storage.deleteBan(.address(range.description)) }
            addressBans.withLock { $0.removeAll { $0.range == range } }
            guard lifted else { throw AdminError("\(range) is not banned") }
            return AdminReply("unbanned \(range)", json: ["address": range.description])

        case .bans:
            let now = Timestamp.now
            let bans = try await threadPool.runIfActive { try storage.bans() }.filter { $0.holds(at: now) }
            let lines = bans.map { ban in
                let what = if case .address = ban.target { "address \(ban.name)" } else { ban.name }
                return "\(what): \(Self.end(of: ban)), by \(ban.by) at \(ban.since.iso8601)\(ban.reason.isEmpty ? "" : ": \(ban.reason)")"
            }
            return AdminReply(bans.isEmpty ? "no bans" : lines.joined(separator: "\n"), json: bans.map(BanEntry.init))

        case .notice(let text):
            let reached = hub.notice(text, by: by)
            return AdminReply("notice sent to \(reached) user\(reached == 1 ? "" : "s")", json: ["users": reached])

        case .motd(let text, let reset):
            if reset {
                try await threadPool.runIfActive { try storage.setSetting(Hub.motdSetting, to: nil) }
                hub.setMOTD(configuration.motd)
            } else if let text {
                try await threadPool.runIfActive { try storage.setSetting(Hub.motdSetting, to: text) }
                hub.setMOTD(text)
            }
            let current = hub.motd
            return AdminReply(current.isEmpty ? "no welcome message" : "welcome message: \(current)", json: ["motd": current])

        case .deleteHistory(let conversation, let before, let confirmed):
            let selection = try selection(conversation: conversation, from: nil, before: before)
            let what = Self.describe(conversation: conversation, from: nil, before: before)
            if !confirmed {
                let count = try await threadPool.runIfActive { try storage.countMessages(selection) }
                throw AdminError("not confirmed: add --yes", confirm: "Delete \(count) message\(count == 1 ? "" : "s") (\(what))?")
            }
            let deleted = try await threadPool.runIfActive { try storage.deleteMessages(selection) }
            logger.notice("history deleted", metadata: ["by": "\(by)", "what": "\(what)", "messages": "\(deleted)"])
            return AdminReply("deleted \(deleted) message\(deleted == 1 ? "" : "s") (\(what))", json: ["deleted": deleted])

        case .export(let conversation, let from, let before, let format, let output):
            let selection = try selection(conversation: conversation, from: from, before: before)
            if let output {
                let count = try await exportToFile(selection, format: format, path: output)
                return AdminReply("exported \(count) message\(count == 1 ? "" : "s") to \(output)", json: ["messages": "\(count)", "output": output])
            }
            return AdminReply("", json: ["messages": try await export(selection, format: format, emit: emit)])

        case .backup(let path):
            guard path.hasPrefix("/") else { throw AdminError("give the backup's full path") }
            let started = Date()
            do {
                try await threadPool.runIfActive { try storage.backup(to: path) }
            } catch {
                throw AdminError("the backup to \(path) failed: \(error.localizedDescription)")
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0
            logger.notice("backup written", metadata: ["path": "\(path)", "bytes": "\(size)"])
            return AdminReply("backup written to \(path) (\(Self.bytes(size)) in \(String(format: "%.2f", Date().timeIntervalSince(started))) s)",
                              json: ["path": path, "bytes": "\(size)"])

        case .resetPassword(let user, let given):
            guard let name = hub.accountName(user) else { throw AdminError("no account named '\(user)'") }
            let password = given ?? Self.generatedPassword()
            do { try configuration.limits.validatePassword(password) } catch { throw AdminError(error.message) }
            let key = Names.key(name)
            let cost = configuration.bcryptCost
            let loop = group.next()
            try await passwords.run(on: loop, unless: { false }) {
                try storage.updatePassword(user: key, passwordHash: Bcrypt.hash(password, cost: cost))
                try storage.deleteTokens(user: key, except: nil)
            }.get()
            let closed = hub.closeSessions(of: key, ParleyError(.loggedOut, "your password was reset by the operator; log in with the new one"))
            logger.notice("password reset", metadata: ["user": "\(name)", "by": "\(by)"])
            let shown = given == nil ? "\nnew password (shown once): \(password)" : ""
            var json = ["user": name, "sessionsClosed": "\(closed)"]
            if given == nil { json["password"] = password }
            return AdminReply("password of \(name) reset; login tokens revoked\(closed > 0 ? "; \(closed) session\(closed == 1 ? "" : "s") closed" : "")\(shown)", json: json)

        case .shutdown:
            requestShutdown()
            return AdminReply("shutting down", json: ["shutdown": true])

        case .reload:
            let certificate: TLSCertificateSummary
            do { certificate = try reloadTLS() } catch { throw AdminError("\(error)") }
            return AdminReply("certificate reloaded, for new connections: \(certificate)", json: certificate.reloadReply)
        }
    }

    /// A ban from now for `duration` seconds (nil: without end), stored before it is returned.
    private func storeBan(_ target: Ban.Target, name: String, duration: Double?, reason: String, by: String) async throws -> Ban {
        let now = Timestamp.now
        let until = duration.map { Timestamp(milliseconds: now.milliseconds + Int64($0 * 1000)) }
        let ban = Ban(target: target, name: name, reason: reason, by: by, since: now, until: until)
        let storage = self.storage
        try await threadPool.runIfActive { try storage.saveBan(ban) }
        return ban
    }

    /// `until <time>` or `without end`.
    static func end(of ban: Ban) -> String { ban.until.map { "until \($0.iso8601)" } ?? "without end" }

    /// A ban as `bans` and `ban --json` show it.
    struct BanEntry: Encodable {
        var kind: String
        var target: String
        var reason: String
        var by: String
        var since: String
        var until: String?

        init(_ ban: Ban) {
            if case .address = ban.target { kind = "address" } else { kind = "account" }
            target = ban.name
            reason = ban.reason
            by = ban.by
            since = ban.since.iso8601
            until = ban.until?.iso8601
        }
    }

    /// The messages a conversation name and times stand for.
    func selection(conversation: String?, from: Timestamp?, before: Timestamp?) throws -> MessageSelection {
        guard let conversation else { return MessageSelection(room: nil, from: from, before: before) }
        let room: Room
        let names = conversation.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        if names.count == 2 {
            guard !names[0].isEmpty, !names[1].isEmpty else { throw AdminError("a private conversation is USER1,USER2") }
            room = .direct(between: names[0], and: names[1])
        } else if Names.key(conversation) == Room.generalName {
            room = .general
        } else if let group = hub.state.withLock({ $0.directory.group(named: conversation) }) {
            room = group.room
        } else {
            throw AdminError("no conversation '\(conversation)': give general, a group's name, or USER1,USER2")
        }
        return MessageSelection(room: room, from: from, before: before)
    }

    static func describe(conversation: String?, from: Timestamp?, before: Timestamp?) -> String {
        var words = [conversation.map { "in \($0)" } ?? "in every conversation"]
        if let from { words.append("from \(from.iso8601)") }
        if let before { words.append("before \(before.iso8601)") }
        return words.joined(separator: " ")
    }

    /// Messages exported per read: memory stays at one page whatever the history's size.
    static let exportPageSize = 500

    /// Streams the selected messages through `emit`, a page at a time. Returns how many.
    func export(_ selection: MessageSelection, format: AdminCommand.ExportFormat, emit: @Sendable (String) async throws -> Void) async throws -> Int {
        let storage = self.storage
        var after: Int64 = 0
        var count = 0
        while true {
            let start = after
            let page = try await threadPool.runIfActive { try storage.messages(selection, after: start, limit: Self.exportPageSize) }
            guard let last = page.last else { return count }
            try await emit(page.map { Self.exportLine($0, format: format) }.joined())
            count += page.count
            after = last.id
        }
    }

    /// Writes the selected messages to a new file at `path` (replaced only when complete).
    func exportToFile(_ selection: MessageSelection, format: AdminCommand.ExportFormat, path: String) async throws -> Int {
        guard path.hasPrefix("/") else { throw AdminError("give the output file's full path") }
        // Never over something that exists (a file, a folder, the database itself).
        guard !FileManager.default.fileExists(atPath: path) else { throw AdminError("\(path) exists: give a new file") }
        let partial = path + ".partial"
        let fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AdminError("cannot write \(path): \(String(cString: strerror(errno)))") }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: false)
        let writer = Locked(handle)
        do {
            let count = try await export(selection, format: format) { text in
                try writer.withLock { try $0.write(contentsOf: Data(text.utf8)) }
            }
            try handle.close()
            // link() fails if the path appeared meanwhile: nothing is ever replaced.
            guard link(partial, path) == 0 else {
                let reason = String(cString: strerror(errno))
                unlink(partial)
                throw AdminError("cannot write \(path): \(reason)")
            }
            unlink(partial)
            return count
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
    }

    /// One exported message: a transcript line (`2026-12-04T10:00:00.000Z #general alice: hi`,
    /// continuation lines indented, control characters shown escaped) or a JSON line.
    static func exportLine(_ message: StoredMessage, format: AdminCommand.ExportFormat) -> String {
        switch format {
        case .jsonl:
            var frame = ServerFrame(type: "message")
            let wire = WireMessage(message)
            frame.messageId = wire.messageId
            frame.time = wire.time
            frame.from = wire.from
            frame.room = wire.room
            frame.to = wire.to
            frame.text = wire.text
            var json = String(decoding: frame.json(), as: UTF8.self)
            // Without the frame's `type`: each line is one message.
            json = json.replacingOccurrences(of: #"{"type":"message","#, with: "{")
            return json + "\n"
        case .text:
            let place: String
            switch message.room {
            case .general, .group: place = "#" + message.roomName
            case .direct: place = "@" + message.roomName
            }
            let text = printable(message.text).replacingOccurrences(of: "\n", with: "\n    ")
            return "\(message.time.iso8601) \(place) \(printable(message.sender)): \(text)\n"
        }
    }

    /// Text with control characters (but line breaks and tabs) shown as `\u{…}`, so a transcript
    /// printed to a terminal cannot drive it.
    public static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { ($0.value < 0x20 && $0 != "\n" && $0 != "\t") || (0x7F...0x9F).contains($0.value) }) else {
            return text
        }
        var out = ""
        for scalar in text.unicodeScalars {
            if (scalar.value < 0x20 && scalar != "\n" && scalar != "\t") || (0x7F...0x9F).contains(scalar.value) {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func span(_ seconds: Double) -> String {
        let s = Int(seconds)
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min \(s % 60) s" }
        if s < 86_400 { return "\(s / 3600) h \(s % 3600 / 60) min" }
        return "\(s / 86_400) d \(s % 86_400 / 3600) h"
    }

    static func bytes(_ n: Int64) -> String {
        if n < 1024 { return "\(n) B" }
        if n < 1 << 20 { return String(format: "%.1f KiB", Double(n) / 1024) }
        if n < 1 << 30 { return String(format: "%.1f MiB", Double(n) / 1_048_576) }
        return String(format: "%.2f GiB", Double(n) / 1_073_741_824)
    }

    /// 20 characters from 54 unambiguous ones (about 115 bits).
    static func generatedPassword() -> String {
        let alphabet = Array("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<20).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }
}
