/// The tunable limits of a server, with the defaults promised in docs/PROTOCOL.md.
/// Thread safety: a value type; `Sendable`.
public struct Limits: Sendable, Hashable {
    /// Largest frame payload accepted or sent, in bytes.
    public var maxFrameSize: Int = 64 * 1024
    /// Longest message text, in characters.
    public var maxMessageLength: Int = 4000
    /// Longest message text, in bytes of UTF-8 (one character can be many bytes).
    public var maxTextBytes: Int = 16 * 1024
    /// Shortest password, in characters.
    public var minPasswordLength: Int = 8
    /// Longest password, in UTF-8 bytes (bcrypt reads at most 72).
    public var maxPasswordBytes: Int = 72
    /// Messages replayed per room at login.
    public var replayLimit: Int = 100
    /// Largest page a history request may ask for.
    public var maxHistoryPage: Int = 200
    /// Bytes queued for one connection before it is disconnected as a slow consumer.
    public var maxOutboxBytes: Int = 4 * 1024 * 1024

    public init() {}

    /// Checks message text: not empty (after trimming white space), no control characters but
    /// newline and tab (`INVALID_TEXT`), at most ``maxTextBytes`` bytes of UTF-8 and
    /// ``maxMessageLength`` characters (`MESSAGE_TOO_LONG`).
    public func validateText(_ text: String) throws(ParleyError) {
        if text.allSatisfy({ $0.isWhitespace }) {
            throw ParleyError(.emptyMessage, "a message cannot be empty")
        }
        // In UTF-8 every byte of a multi-byte sequence is 0x80 or above, so a byte below 0x20
        // or equal to 0x7F is exactly one of those characters.
        if text.utf8.contains(where: { ($0 < 0x20 && $0 != 0x0A && $0 != 0x09) || $0 == 0x7F }) {
            throw ParleyError(.invalidText, "a message may not contain control characters other than newline and tab")
        }
        if text.utf8.count > maxTextBytes {
            throw ParleyError(.messageTooLong, "a message is at most \(maxTextBytes) bytes of UTF-8")
        }
        if text.count > maxMessageLength {
            throw ParleyError(.messageTooLong, "a message is at most \(maxMessageLength) characters")
        }
    }

    /// Checks a new password's length.
    public func validatePassword(_ password: String) throws(ParleyError) {
        if password.count < minPasswordLength {
            throw ParleyError(.passwordTooShort, "a password needs at least \(minPasswordLength) characters")
        }
        if password.utf8.count > maxPasswordBytes {
            throw ParleyError(.passwordTooLong, "a password is at most \(maxPasswordBytes) bytes")
        }
    }
}
