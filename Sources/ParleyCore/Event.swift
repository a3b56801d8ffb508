/// What the hub tells sessions, in Parley's own terms: each transport turns an event into its
/// wire format (encoded once per format, the same bytes for every session of that format).
/// Thread safety: a value type; `Sendable`.
public enum Event: Sendable, Hashable {
    /// A stored message, live.
    case message(StoredMessage)
    /// A stored message sent again at login, because the user had not received it.
    case replayed(StoredMessage)
    /// At login, a conversation had more missed messages than the replay cap: only the newest
    /// are replayed, starting with `before`; older ones are in its history. `conversation` is the
    /// room's name, or (`isPrivate`) the other user's.
    case replayMore(conversation: String, isPrivate: Bool, before: Int64)
    /// The login replay is over: `count` messages were replayed.
    case replayEnd(count: Int)
    /// Users who came online or went offline. With `snapshot`, the list is the complete state of
    /// what the session is told about (sent at login, on `follow`, and when the server goes back
    /// to telling everyone about everyone).
    case presence([PresenceChange], snapshot: Bool)
    /// How many users are online; `everyone` says whether every arrival and departure is sent.
    case onlineCount(Int, everyone: Bool)
    /// Something happened in a group (user names as shown).
    case group(name: String, GroupEvent)
    /// The session's user was invited to a group.
    case invited(group: String, by: String)
    /// The server is going away.
    case shutdown(message: String)
    /// A system notice from an operator to everyone online (`parley admin notice`).
    case notice(text: String, by: String)
    /// The welcome message (message of the day), sent right after `welcome` at every login.
    case motd(text: String)
}

/// One user coming online or going offline.
/// Thread safety: a value type; `Sendable`.
public struct PresenceChange: Sendable, Hashable, Codable {
    public var username: String
    public var online: Bool

    public init(username: String, online: Bool) {
        self.username = username
        self.online = online
    }
}
