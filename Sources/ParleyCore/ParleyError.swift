/// A failure that a client is told about: a stable ``Code`` and a message safe to show users.
///
/// Modelled on postgres-nio's errors: ``code`` is an extensible struct rather than a closed enum,
/// ``description`` is safe to show, ``debugDescription`` may carry details for logs.
/// Thread safety: a value type; `Sendable`.
public struct ParleyError: Error, Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// A stable, machine-readable error code, sent on the wire as an upper-case string.
    public struct Code: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public init(stringLiteral value: String) { self.rawValue = value }
        public var description: String { rawValue }

        // Framing and request shape
        public static let badJSON: Code = "BAD_JSON"
        public static let badUTF8: Code = "BAD_UTF8"
        public static let badRequest: Code = "BAD_REQUEST"
        public static let unknownType: Code = "UNKNOWN_TYPE"
        public static let frameTooLarge: Code = "FRAME_TOO_LARGE"
        public static let emptyFrame: Code = "EMPTY_FRAME"
        public static let frameTimeout: Code = "FRAME_TIMEOUT"
        // Accounts
        public static let notAuthenticated: Code = "NOT_AUTHENTICATED"
        public static let alreadyAuthenticated: Code = "ALREADY_AUTHENTICATED"
        public static let invalidUsername: Code = "INVALID_USERNAME"
        public static let passwordTooShort: Code = "PASSWORD_TOO_SHORT"
        public static let passwordTooLong: Code = "PASSWORD_TOO_LONG"
        public static let usernameExists: Code = "USERNAME_EXISTS"
        public static let invalidCredentials: Code = "INVALID_CREDENTIALS"
        public static let rateLimited: Code = "RATE_LIMITED"
        public static let registrationClosed: Code = "REGISTRATION_CLOSED"
        public static let guestsDisabled: Code = "GUESTS_DISABLED"
        public static let guestNotAllowed: Code = "GUEST_NOT_ALLOWED"
        // Messages and rooms
        public static let messageTooLong: Code = "MESSAGE_TOO_LONG"
        public static let emptyMessage: Code = "EMPTY_MESSAGE"
        public static let invalidText: Code = "INVALID_TEXT"
        public static let noSuchGroup: Code = "NO_SUCH_GROUP"
        public static let userNotFound: Code = "USER_NOT_FOUND"
        public static let notAMember: Code = "NOT_A_MEMBER"
        public static let alreadyMember: Code = "ALREADY_MEMBER"
        public static let groupExists: Code = "GROUP_EXISTS"
        public static let invalidGroupName: Code = "INVALID_GROUP_NAME"
        public static let notOwner: Code = "NOT_OWNER"
        public static let inviteOnly: Code = "INVITE_ONLY"
        // Connection
        public static let slowConsumer: Code = "SLOW_CONSUMER"
        public static let loginTimeout: Code = "LOGIN_TIMEOUT"
        public static let idleTimeout: Code = "IDLE_TIMEOUT"
        public static let shuttingDown: Code = "SERVER_SHUTTING_DOWN"
        public static let serverBusy: Code = "SERVER_BUSY"
        public static let tooManyConnections: Code = "TOO_MANY_CONNECTIONS"
        public static let storageFailed: Code = "STORAGE_FAILED"
        public static let internalError: Code = "INTERNAL"
        /// The session was ended by its own user (`end_session`, `logout` everywhere, a changed password).
        public static let loggedOut: Code = "LOGGED_OUT"
        /// An operator closed every session of the user (`parley admin kick`); `by` and `reason` say who and why.
        public static let kicked: Code = "KICKED"
        /// The account (or the address) is banned: at login, and to its live sessions when the ban
        /// is made; `reason`, `by` and `until` (absent for a ban without end) say more.
        public static let banned: Code = "BANNED"
    }

    public var code: Code
    /// Text safe to show to users.
    public var message: String
    /// Details for logs only.
    public var details: String?
    /// Seconds after which trying again may succeed (`RATE_LIMITED`), sent as `retryAfter`.
    public var retryAfter: Double?
    /// Who did it (`KICKED`, `BANNED`): the operator's name.
    public var by: String?
    /// Why (`KICKED`, `BANNED`), as the operator gave it.
    public var reason: String?
    /// When a ban ends (`BANNED`), ISO 8601; absent for a ban without end.
    public var until: String?

    public init(_ code: Code, _ message: String, details: String? = nil, retryAfter: Double? = nil,
                by: String? = nil, reason: String? = nil, until: String? = nil) {
        self.code = code
        self.message = message
        self.details = details
        self.retryAfter = retryAfter
        self.by = by
        self.reason = reason
        self.until = until
    }

    /// Errors are equal when their code and message are; ``details`` is for logs only.
    public static func == (a: ParleyError, b: ParleyError) -> Bool { a.code == b.code && a.message == b.message }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
    }

    public var description: String { "\(code): \(message)" }
    public var debugDescription: String {
        details.map { "\(code): \(message) [\($0)]" } ?? description
    }
}
