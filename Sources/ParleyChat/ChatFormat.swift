import Foundation
import ParleyClient
import ParleyCore
import ParleyWire

/// How events look as lines: local time, the conversation (`(PM)` for private, `(team)` for a
/// group), the sender, the text; and in which conversation they belong.
/// Thread safety: stateless.
public enum ChatFormat {
    /// The conversation a message belongs to, as `me` sees it.
    public static func conversation(of message: WireMessage, me: String) -> ChatScreen.Conversation {
        if let room = message.room {
            return room.lowercased() == "general" ? .general : .group(room)
        }
        let other = message.from.lowercased() == me.lowercased() ? (message.to ?? message.from) : message.from
        return .user(other)
    }

    public static func line(for message: WireMessage, me: String) -> ChatScreen.Line {
        let time = localTime(message.time)
        let prefix: String
        let style: Style
        switch conversation(of: message, me: me) {
        case .general:
            prefix = ""
            style = .general
        case .group(let name):
            prefix = "(\(name)) "
            style = .group
        case .user(let other):
            prefix = message.from.lowercased() == me.lowercased() ? "(PM to \(other)) " : "(PM) "
            style = .privateMessage
        }
        let mentions = message.from.lowercased() != me.lowercased() && !me.isEmpty
        let head = "\(time) \(prefix)\(message.from): "
        let marks = ChatScreen.highlighted(Array(message.text), name: me)
        return ChatScreen.Line(style: style, text: head + message.text, mentionsMe: mentions && marks.contains(true),
                               highlight: mentions ? me : nil, indent: TextWidth.of(TextWidth.escapingControls(head)))
    }

    /// A system notice from an operator, set apart from chat: `*** notice from root: the server
    /// restarts at noon`. A text of several lines shows each under the first.
    public static func noticeLine(text: String, by: String) -> ChatScreen.Line {
        let head = by.isEmpty ? "*** notice: " : "*** notice from \(by): "
        return ChatScreen.Line(style: .notice, text: head + text, indent: TextWidth.of(TextWidth.escapingControls(head)))
    }

    /// The server's welcome message (message of the day), shown at login: `*** Welcome to the chat :)`.
    public static func motdLine(_ text: String) -> ChatScreen.Line {
        ChatScreen.Line(style: .notice, text: "*** " + text, indent: 4)
    }

    /// A line as line mode prints it: control characters escaped, and a text of several lines as
    /// several lines, each after the first indented under the message text (``ChatScreen/Line/indent``).
    public static func plainLines(_ line: ChatScreen.Line) -> [String] {
        let pad = String(repeating: " ", count: max(0, line.indent))
        let parts = TextWidth.escapingControls(line.text, keepingNewlines: true).split(separator: "\n", omittingEmptySubsequences: false)
        return parts.enumerated().map { index, part in index == 0 ? String(part) : pad + String(part) }
    }

    nonisolated(unsafe) static let parser: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
    /// For times without fractional seconds.
    nonisolated(unsafe) static let wholeSecondsParser = ISO8601DateFormatter()
    static let lock = NSLock()

    /// The code of the error frame with which the server ends a session it logged out (a
    /// password change, `logout` everywhere, or `end_session` from another session).
    public static let loggedOut = ParleyError.Code("LOGGED_OUT")

    /// `yyyy-MM-dd HH:mm` in local time; the text as given when it is not an ISO 8601 time.
    public static func localDateTime(_ iso: String) -> String {
        guard let date = lock.withLock({ parser.date(from: iso) ?? wholeSecondsParser.date(from: iso) }) else { return iso }
        let p = Calendar.current.dateComponents([.year, .month, .day, .hour, .minute], from: date)
        return String(format: "%04d-%02d-%02d %02d:%02d", p.year ?? 0, p.month ?? 0, p.day ?? 0, p.hour ?? 0, p.minute ?? 0)
    }

    /// The lines of `/sessions`: one per session (id, transport, address, since), the one asking marked.
    public static func sessionLines(_ sessions: [SessionInfo]) -> [String] {
        guard !sessions.isEmpty else { return ["no sessions"] }
        let idWidth = sessions.map { String($0.session).count }.max() ?? 1
        let transportWidth = sessions.map(\.transport.count).max() ?? 0
        let addressWidth = sessions.map(\.address.count).max() ?? 0
        func padded(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(0, width - text.count)) }
        return ["your sessions (/end <id> ends one):"] + sessions.map { s in
            "  #" + padded(String(s.session), idWidth) + "  " + padded(s.transport, transportWidth) + "  " + padded(s.address, addressWidth)
                + "  since " + localDateTime(s.since) + (s.current ? "  (this one)" : "")
        }
    }

    /// `HH:mm` in local time.
    public static func localTime(_ iso: String) -> String {
        let date = lock.withLock { parser.date(from: iso) } ?? Date()
        let parts = Calendar.current.dateComponents([.hour, .minute], from: date)
        return String(format: "%02d:%02d", parts.hour ?? 0, parts.minute ?? 0)
    }

    /// Words for an error a user can act on.
    public static func words(for error: any Error) -> String {
        if let error = error as? ParleyError {
            switch error.code {
            case .invalidCredentials: return "Wrong username or password."
            case .usernameExists: return "That name is taken."
            case .invalidUsername: return "Invalid name: use 1-32 letters, digits, _ - or ."
            case .passwordTooShort: return "Password too short: at least 8 characters."
            case .passwordTooLong: return "Password too long: at most 72 bytes."
            case .rateLimited: return "Too many attempts: \(error.message)."
            case .serverBusy: return "The server is busy; try again in a moment."
            case ChatFormat.loggedOut: return "logged out: \(error.message)"
            case .kicked: return kicked(error)
            case .banned: return banned(error)
            default: return error.message
            }
        }
        if let error = error as? ParleyClient.ClientError { return error.description }
        return "\(error)"
    }

    /// `KICKED` in words: "kicked by root: spamming" (who and why, as far as the server said).
    static func kicked(_ error: ParleyError) -> String {
        let by = nonEmpty(error.by), reason = nonEmpty(error.reason)
        if by == nil, reason == nil { return error.message.isEmpty ? "kicked by an operator" : error.message }
        return "kicked" + (by.map { " by \($0)" } ?? "") + (reason.map { ": \($0)" } ?? "")
    }

    /// `BANNED` in words: "banned by root until 2026-12-05 11:00: spam", the end in local time
    /// (no end: "banned by root: spam"); a refused address, as the server says it.
    static func banned(_ error: ParleyError) -> String {
        let by = nonEmpty(error.by), reason = nonEmpty(error.reason), until = nonEmpty(error.until)
        if by == nil, reason == nil, until == nil { return error.message.isEmpty ? "banned" : error.message }
        return "banned" + (by.map { " by \($0)" } ?? "") + (until.map { " until \(localDateTime($0))" } ?? "")
            + (reason.map { ": \($0)" } ?? "")
    }

    static func nonEmpty(_ text: String?) -> String? {
        guard let text, !text.trimmingCharacters(in: .whitespaces).isEmpty else { return nil }
        return text
    }
}
