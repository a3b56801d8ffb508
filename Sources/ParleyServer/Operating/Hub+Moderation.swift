import Foundation
import NIOCore
import ParleyCore
import ParleyStore

/// What operators do to people (`parley admin` and the console): see who is online, kick, ban,
/// send notices, set the welcome message. Every change is stored before it takes effect.
extension Hub {
    /// The name of the stored setting that overrides the configured welcome message.
    static let motdSetting = "motd"

    /// One online user with their sessions, for `parley admin online`.
    struct OnlineEntry: Sendable, Codable {
        struct SessionEntry: Sendable, Codable {
            var session: Int
            var transport: String
            var address: String
            var since: String
            /// Seconds since the client last sent a request.
            var idle: Int
        }
        var user: String
        var guest: Bool
        var sessions: [SessionEntry]
    }

    /// Everyone online, by name, with their sessions oldest first.
    func onlineEntries() -> [OnlineEntry] {
        let users = state.withLock { Array($0.users.values) }
        let format = ISO8601DateFormatter()
        let now = Timestamp.now.milliseconds
        return users.map { user in
            OnlineEntry(user: user.identity.name, guest: user.identity.isGuest, sessions: user.sessions.sorted { $0.id < $1.id }.map {
                .init(session: $0.id, transport: $0.transport, address: $0.address, since: format.string(from: $0.since),
                      idle: Int(max(0, now - $0.lastActive.load(ordering: .relaxed)) / 1000))
            })
        }.sorted { $0.user.lowercased() < $1.user.lowercased() }
    }

    /// Counts for `parley admin stats` that the hub knows.
    var onlineCounts: (users: Int, sessions: Int, accounts: Int, groups: Int) {
        state.withLock { s in (s.users.count, s.users.values.reduce(0) { $0 + $1.sessions.count }, s.accounts.count, s.directory.count) }
    }

    /// The account's name as registered, if it exists.
    func accountName(_ name: String) -> String? {
        state.withLock { $0.accounts[Names.key(name)] }
    }

    /// Closes every session of `name` (an account or a guest), telling each `KICKED` with who and
    /// why. Returns how many sessions were closed.
    func kick(_ name: String, reason: String, by: String) -> Int {
        let said = reason.isEmpty ? "" : ": \(reason)"
        let error = ParleyError(.kicked, "you were kicked by \(by)\(said)", by: by, reason: reason.isEmpty ? nil : reason)
        let closed = closeSessions(of: Names.key(name), error)
        if closed > 0 {
            logger.notice("kicked", metadata: ["user": "\(name)", "by": "\(by)", "reason": "\(reason)", "sessions": "\(closed)"])
        }
        return closed
    }

    /// The ban on the account `key` that holds now, if any (an ended one is forgotten).
    func activeBan(of key: String) -> Ban? {
        let now = Timestamp.now
        return state.withLock { s in
            guard let ban = s.bans[key] else { return nil }
            if ban.holds(at: now) { return ban }
            s.bans[key] = nil
            return nil
        }
    }



    /// Applies a stored account ban: later logins are refused and the live sessions are closed.
    /// Returns how many sessions were closed.
    func applyBan(_ ban: Ban) -> Int {
        guard case .account(let key) = ban.target else { return 0 }
        let sessions = state.withLock { s -> [Session] in
            s.bans[key] = ban
            return s.users[key]?.sessions.filter { !$0.identity.isGuest } ?? []
        }
        let error = ban.refusal
        for session in sessions { closeSession(session, error) }
        logger.notice("banned", metadata: ["user": "\(ban.name)", "by": "\(ban.by)", "reason": "\(ban.reason)",
                                           "until": "\(ban.until?.iso8601 ?? "-")", "sessions": "\(sessions.count)"])
        return sessions.count
    }

    /// Forgets an account ban (after it was deleted from storage).
    func liftBan(key: String) {
        state.withLock { _ = $0.bans.removeValue(forKey: key) }
    }

    /// Closes every logged-in session whose address `matches`, telling it `error`; returns how many.
    func closeSessions(where matches: (String) -> Bool, _ error: ParleyError) -> Int {
        let sessions = state.withLock { s in s.users.values.flatMap(\.sessions) }.filter { matches($0.address) }
        for session in sessions { closeSession(session, error) }
        return sessions.count
    }

    /// Closes every session of the user `key`, telling each `error`; returns how many.
    func closeSessions(of key: String, _ error: ParleyError) -> Int {
        let sessions = state.withLock { $0.users[key]?.sessions ?? [] }
        for session in sessions { closeSession(session, error) }
        return sessions.count
    }

    /// A system notice to every session online. Returns how many users it reached.
    func notice(_ text: String, by: String) -> Int {
        let keys = state.withLock { Array($0.users.keys) }
        notify(.notice(text: text, by: by), users: keys)
        logger.notice("notice sent", metadata: ["by": "\(by)", "users": "\(keys.count)"])
        return keys.count
    }

    /// The welcome message sent at login.
    var motd: String { state.withLock { $0.motd } }

    /// Sets the welcome message for the logins that follow.
    func setMOTD(_ text: String) {
        state.withLock { $0.motd = text }
    }

    /// Tells a session why and closes its connection, on its loop.
    func closeSession(_ session: Session, _ error: ParleyError) {
        session.loop.execute { session.sink.close(with: error) }
    }
}

extension Ban {
    /// What the banned are told (`BANNED`), with who, why and the end: an account at login and
    /// in its live sessions, an address range when it connects.
    var refusal: ParleyError {
        var words: String
        switch target {
        case .account: words = "this account is banned"
        case .address: words = "connections from your address are refused"
        }
        if let until { words += " until \(until.iso8601)" }
        if !reason.isEmpty { words += ": \(reason)" }
        return ParleyError(.banned, words, by: by, reason: reason.isEmpty ? nil : reason, until: until?.iso8601)
    }
}
