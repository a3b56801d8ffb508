import Foundation

/// What a line typed into `parley chat` asks for: a command (`/pm bob hi`) or plain text for the
/// current conversation. Parsing is pure and never fails silently: a wrong line gets a one-line
/// explanation (``CommandError``).
/// Thread safety: a value type; `Sendable`.
public enum ChatCommand: Sendable, Equatable {
    /// Plain text, to the current conversation.
    case say(String)
    case privateMessage(user: String, text: String)
    case groupMessage(group: String, text: String)
    case createGroup(String)
    case joinGroup(String)
    case leaveGroup(String)
    case myGroups
    case allGroups
    case members(String)
    case online
    case invite(group: String, user: String)
    case kick(group: String, user: String)
    case mode(group: String, inviteOnly: Bool)
    case history(Int?)
    /// Switch the current conversation: `general`, a group, or a user.
    case to(String)
    /// Change the account's password. `/password` alone: the client asks for both (at a
    /// terminal without showing them; in line mode from the next two input lines).
    case changePassword(current: String?, new: String?)
    /// Log out this session, or (`/logout all`) every session of the account, and leave.
    case logout(everywhere: Bool)
    /// List the account's sessions.
    case sessions
    /// End one of the account's sessions, by the id `/sessions` lists.
    case endSession(Int)
    case help
    case quit

    /// One command in `/help`: how to write it and what it does.
    public struct Usage: Sendable {
        public let name: String
        public let arguments: String
        public let summary: String
    }

    /// Every command, the classroom set first, in the order `/help` lists them.
    public static let usages: [Usage] = [
        Usage(name: "pm", arguments: "<user> <message>", summary: "send a private message"),
        Usage(name: "gc", arguments: "<group> <message>", summary: "send a message to a group"),
        Usage(name: "cg", arguments: "<group>", summary: "create a group"),
        Usage(name: "jg", arguments: "<group>", summary: "join a group"),
        Usage(name: "lg", arguments: "<group>", summary: "leave a group"),
        Usage(name: "listg", arguments: "", summary: "list my groups"),
        Usage(name: "groups", arguments: "", summary: "list all groups"),
        Usage(name: "members", arguments: "<group>", summary: "who is in a group"),
        Usage(name: "online", arguments: "", summary: "who is online"),
        Usage(name: "invite", arguments: "<group> <user>", summary: "invite a user (group owner)"),
        Usage(name: "kick", arguments: "<group> <user>", summary: "remove a user (group owner)"),
        Usage(name: "mode", arguments: "<group> invite-only|open", summary: "who may join (group owner)"),
        Usage(name: "history", arguments: "[N]", summary: "show the last N messages here (default 20)"),
        Usage(name: "to", arguments: "<user|group|general>", summary: "switch the conversation you type into"),
        Usage(name: "password", arguments: "[<current> <new>]", summary: "change your password (asked for, unseen)"),
        Usage(name: "logout", arguments: "[all]", summary: "log out here (all: everywhere) and leave"),
        Usage(name: "sessions", arguments: "", summary: "list your sessions"),
        Usage(name: "end", arguments: "<id>", summary: "end one of your sessions (see /sessions)"),
        Usage(name: "help", arguments: "", summary: "this list"),
        Usage(name: "quit", arguments: "", summary: "leave (also Ctrl-C, Ctrl-D)"),
    ]

    /// Other names some commands answer to, and the command each stands for.
    static let aliases = ["msg": "pm", "who": "online", "query": "to", "?": "help", "exit": "quit", "passwd": "password"]

    /// Command names, for Tab completion.
    public static var names: [String] { usages.map(\.name) }

    /// Why a line is not a valid command.
    public struct CommandError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Parses one line. Blank lines are `nil`; `//text` sends `/text` as plain text.
    public static func parse(_ line: String) throws(CommandError) -> ChatCommand? {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty { return nil }
        guard trimmed.hasPrefix("/") else { return .say(line) }
        if trimmed.hasPrefix("//") { return .say(String(trimmed.dropFirst())) }
        let body = trimmed.dropFirst()
        let name = body.prefix { !$0.isWhitespace }.lowercased()
        let rest = body.dropFirst(name.count).drop { $0.isWhitespace }
        let words = rest.split(whereSeparator: \.isWhitespace).map(String.init)
        func usage() -> CommandError {
            let canonical = aliases[name] ?? name
            guard let u = usages.first(where: { $0.name == canonical }) else { return CommandError(description: "usage: see /help") }
            return CommandError(description: "usage: /\(u.name) \(u.arguments)")
        }
        /// The first word, and the text after it (kept as typed).
        func wordAndText() throws(CommandError) -> (String, String) {
            guard let first = words.first else { throw usage() }
            let text = rest.dropFirst(first.count).drop { $0.isWhitespace }
            guard !text.isEmpty else { throw usage() }
            return (first, String(text))
        }
        func one() throws(CommandError) -> String {
            guard words.count == 1 else { throw usage() }
            return words[0]
        }
        func two() throws(CommandError) -> (String, String) {
            guard words.count == 2 else { throw usage() }
            return (words[0], words[1])
        }
        func none() throws(CommandError) {
            guard words.isEmpty else { throw usage() }
        }
        switch name {
        case "pm", "msg": let (u, t) = try wordAndText(); return .privateMessage(user: u, text: t)
        case "gc": let (g, t) = try wordAndText(); return .groupMessage(group: g, text: t)
        case "cg": return .createGroup(try one())
        case "jg": return .joinGroup(try one())
        case "lg": return .leaveGroup(try one())
        case "listg": try none(); return .myGroups
        case "groups": try none(); return .allGroups
        case "members": return .members(try one())
        case "online", "who": try none(); return .online
        case "invite": let (g, u) = try two(); return .invite(group: g, user: u)
        case "kick": let (g, u) = try two(); return .kick(group: g, user: u)
        case "mode":
            let (g, m) = try two()
            switch m.lowercased() {
            case "invite-only", "inviteonly", "closed": return .mode(group: g, inviteOnly: true)
            case "open": return .mode(group: g, inviteOnly: false)
            default: throw usage()
            }
        case "history":
            if words.isEmpty { return .history(nil) }
            guard words.count == 1, let n = Int(words[0]), (1...200).contains(n) else {
                throw CommandError(description: "usage: /history [N], N from 1 to 200")
            }
            return .history(n)
        case "to", "query": return .to(try one())
        case "password", "passwd":
            if words.isEmpty { return .changePassword(current: nil, new: nil) }
            let (current, new) = try two()
            return .changePassword(current: current, new: new)
        case "logout":
            if words.isEmpty { return .logout(everywhere: false) }
            guard words.count == 1, words[0].lowercased() == "all" else { throw usage() }
            return .logout(everywhere: true)
        case "sessions": try none(); return .sessions
        case "end":
            guard let id = Int(try one()) else { throw usage() }
            return .endSession(id)
        case "help", "?": try none(); return .help
        case "quit", "exit": return .quit
        default:
            throw CommandError(description: "unknown command /\(name); /help lists the commands")
        }
    }
}
