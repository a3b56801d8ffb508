import ParleyCore
import ParleyWire

/// Something the server said that is not a reply to a request, as a typed value.
/// Thread safety: a value type; `Sendable`.
public enum ClientEvent: Sendable, Hashable {
    /// A chat message; `replay` is set on messages sent again at login.
    case message(WireMessage)
    /// At login, older missed messages of a conversation (a room, or `with` a user) were left
    /// out: only those from `before` on are replayed; the rest is in its history.
    case replayMore(room: String?, with: String?, before: Int64)
    /// The login replay is over.
    case replayEnd(count: Int)
    /// Users who came online or went offline; `snapshot` when the list is the whole state.
    case presence([PresenceChange], snapshot: Bool)
    /// How many users are online; `everyone` says whether every arrival and departure is sent.
    case onlineCount(Int, everyone: Bool)
    /// Something happened in a group.
    case group(String, GroupEvent)
    case invited(group: String, by: String)
    /// The server asks for a sign of life (``ParleyClient`` answers it by itself).
    case ping
    case shutdown(message: String)
    /// A system notice from the server's operator, to everyone online.
    case notice(text: String, by: String)
    /// The server's welcome message, right after login.
    case motd(text: String)
    /// An error not tied to a request (for example before the server closes the connection).
    case error(ParleyError)
    /// A frame this client version does not know.
    case other(ServerFrame)

    public init(_ frame: ServerFrame) {
        switch frame.type {
        case "message":
            if let message = frame.chatMessage { self = .message(message) } else { self = .other(frame) }
        case "replay_end": self = .replayEnd(count: frame.count ?? 0)
        case "replay_more": self = .replayMore(room: frame.room, with: frame.with, before: frame.before ?? 0)
        case "presence": self = .presence(frame.changes ?? [], snapshot: frame.snapshot ?? false)
        case "online_count": self = .onlineCount(frame.count ?? 0, everyone: frame.everyone ?? false)
        case "group":
            let name = frame.group ?? ""
            let user = frame.username ?? ""
            switch frame.event {
            case "joined": self = .group(name, .joined(user: user))
            case "left": self = .group(name, .left(user: user))
            case "removed": self = .group(name, .removed(user: user, by: frame.by ?? ""))
            case "owner": self = .group(name, .ownerChanged(user: user))
            case "mode": self = .group(name, .modeChanged(inviteOnly: frame.inviteOnly ?? false))
            case "deleted": self = .group(name, .deleted)
            default: self = .other(frame)
            }
        case "invited": self = .invited(group: frame.group ?? "", by: frame.by ?? "")
        case "ping": self = .ping
        case "shutdown": self = .shutdown(message: frame.message ?? "")
        case "notice": self = .notice(text: frame.text ?? "", by: frame.by ?? "")
        case "motd": self = .motd(text: frame.text ?? "")
        case "error": self = frame.parleyError.map { .error($0) } ?? .other(frame)
        default: self = .other(frame)
        }
    }

    /// The chat message, when this is one.
    public var message: WireMessage? {
        if case .message(let message) = self { return message }
        return nil
    }

    /// The presence changes, when this is a presence event.
    public var presenceChanges: [PresenceChange]? {
        if case .presence(let changes, _) = self { return changes }
        return nil
    }
}
