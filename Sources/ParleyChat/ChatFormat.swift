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
    static let lock = NSLock()

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
            default: return error.message
            }
        }
        if let error = error as? ParleyClient.ClientError { return error.description }
        return "\(error)"
    }
}
