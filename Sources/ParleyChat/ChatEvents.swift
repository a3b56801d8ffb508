import ParleyClient
import ParleyCore
import ParleyWire

/// What the server's events mean to the chat client: the lines they show, the names they teach
/// (for Tab completion), and whether the session has ended for good (logged out, kicked by an
/// operator, banned), after which the client must not reconnect. Pure: ``ChatController`` holds
/// one, and tests drive it with made-up events, no server needed.
/// Thread safety: a value type.
public struct ChatEvents: Sendable {
    /// Why a session ended for good: reconnecting would undo it, or be refused.
    /// Thread safety: a value type.
    public struct Ending: Sendable, Equatable {
        public enum Kind: Sendable, Equatable {
            /// `/logout`, or the server logged the session out (`LOGGED_OUT`), or it no longer
            /// takes the password (`INVALID_CREDENTIALS` when logging in again).
            case loggedOut
            /// An operator closed every session of the user (`KICKED`).
            case kicked
            /// The account, or the address, is banned (`BANNED`).
            case banned
        }

        public var kind: Kind
        /// In words, safe to show (as any text: escaped by whoever shows it): "kicked by root: spamming".
        public var text: String

        public init(kind: Kind, text: String) {
            self.kind = kind
            self.text = text
        }

        /// What the status line says about the connection once it is over.
        public var status: String {
            switch kind {
            case .loggedOut: "logged out"
            case .kicked: "kicked"
            case .banned: "banned"
            }
        }

        /// The ending an error announces, if it is one that reconnecting cannot undo.
        public init?(_ error: ParleyError) {
            switch error.code {
            case .loggedOut: self.init(kind: .loggedOut, text: ChatFormat.words(for: error))
            case .kicked: self.init(kind: .kicked, text: ChatFormat.words(for: error))
            case .banned: self.init(kind: .banned, text: ChatFormat.words(for: error))
            default: return nil
            }
        }
    }

    public let me: String
    /// Names seen (users and groups), for Tab completion.
    public var knownUsers: Set<String> = []
    public var knownGroups: Set<String> = []
    /// Set once the session has ended for good; the connection's end is then no reason to reconnect.
    public internal(set) var ended: Ending?
    /// The message of the day last shown: every login sends it, and a reconnect does not repeat it.
    public private(set) var shownMotd: String?

    public init(me: String) {
        self.me = me
    }

    /// Notes the names a message mentions.
    public mutating func note(_ message: WireMessage) {
        knownUsers.insert(message.from)
        if let room = message.room, room.lowercased() != "general" { knownGroups.insert(room) }
    }

    /// Lines for a server event (none for events not shown), each with the conversation it
    /// belongs to (nil: shown wherever one is, counted nowhere as unread).
    public mutating func lines(for event: ClientEvent) -> [(ChatScreen.Line, ChatScreen.Conversation?)] {
        switch event {
        case .message(let message):
            note(message)
            var line = ChatFormat.line(for: message, me: me)
            if message.replay == true {
                line.text = "» " + line.text
                line.indent += 2
            }
            return [(line, ChatFormat.conversation(of: message, me: me))]
        case .replayMore(let room, let with, let before):
            return [(ChatScreen.Line(style: .system, text: "(older messages in \(room ?? "@" + (with ?? "?")): /history, before #\(before))"), nil)]
        case .replayEnd(let count):
            return count == 0 ? [] : [(ChatScreen.Line(style: .system, text: "— \(count) missed message\(count == 1 ? "" : "s") —"), nil)]
        case .presence(let changes, let snapshot):
            knownUsers.formUnion(changes.map(\.username))
            if snapshot {
                let online = changes.filter(\.online).map(\.username)
                return [(ChatScreen.Line(style: .system, text: "online: " + online.joined(separator: ", ")), nil)]
            }
            return changes.filter { $0.username.lowercased() != me.lowercased() }.map {
                (ChatScreen.Line(style: .system, text: "\($0.username) \($0.online ? "came online" : "went offline")"), nil)
            }
        case .onlineCount(let count, _):
            return [(ChatScreen.Line(style: .system, text: "\(count) online"), nil)]
        case .group(let name, let event):
            knownGroups.insert(name)
            let text: String
            switch event {
            case .joined(let user): text = "\(user) joined \(name)"
            case .left(let user): text = "\(user) left \(name)"
            case .removed(let user, let by): text = "\(user) was removed from \(name) by \(by)"
            case .ownerChanged(let user): text = "\(user) now owns \(name)"
            case .modeChanged(let inviteOnly): text = "\(name) is now \(inviteOnly ? "invite-only" : "open")"
            case .deleted: text = "\(name) was deleted"
            }
            return [(ChatScreen.Line(style: .system, text: text), .group(name))]
        case .invited(let group, let by):
            return [(ChatScreen.Line(style: .system, text: "\(by) invited you to \(group): /jg \(group)"), nil)]
        case .shutdown(let message):
            return [(ChatScreen.Line(style: .error, text: "server: \(message)"), nil)]
        case .notice(let text, let by):
            return [(ChatFormat.noticeLine(text: text, by: by), nil)]
        case .motd(let text):
            guard !text.isEmpty, text != shownMotd else { return [] }
            shownMotd = text
            return [(ChatFormat.motdLine(text), nil)]
        case .error(let error):
            guard let ending = Ending(error) else {
                return [(ChatScreen.Line(style: .error, text: ChatFormat.words(for: error)), nil)]
            }
            ended = ending
            // An operator's doing stands out from the other errors.
            return [(ChatScreen.Line(style: .error, text: ending.kind == .loggedOut ? ending.text : "*** " + ending.text), nil)]
        case .ping, .other:
            return []
        }
    }

    /// Logging in again after a dropped connection failed with `error`: when trying again is
    /// pointless (the account or the address is banned, the password no longer works), the
    /// session ends for good and the lines say why; otherwise nil (keep trying).
    public mutating func refused(_ error: any Error) -> [(ChatScreen.Line, ChatScreen.Conversation?)]? {
        guard let error = error as? ParleyError else { return nil }
        let ending: Ending
        switch error.code {
        case .banned: ending = Ending(kind: .banned, text: ChatFormat.words(for: error))
        case .invalidCredentials: ending = Ending(kind: .loggedOut, text: "could not log in again: \(ChatFormat.words(for: error))")
        default: return nil
        }
        ended = ending
        return [(ChatScreen.Line(style: .error, text: "*** " + ending.text), nil)]
    }
}
