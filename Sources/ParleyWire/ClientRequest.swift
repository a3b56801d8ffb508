import ParleyCore

/// Everything a client can ask of the server. The JSON form is `{"type": <name>, "id": …, fields…}`;
/// docs/PROTOCOL.md lists each with its fields.
/// Thread safety: a value type; `Sendable`.
public enum ClientRequest: Sendable, Hashable {
    case register(username: String, password: String)
    /// `since`: replay what came after this message id instead of after the stored read position
    /// (a client that tracks what it has shown loses nothing in flight). `remember` (with a
    /// password): the welcome carries a login token for later logins without the password.
    /// `ack`: the client acknowledges what it has shown (``ack(through:)``), and only its
    /// acknowledgements move the read position; otherwise a message counts as received once its
    /// write to the socket has completed.
    case login(username: String, credential: Credential, since: Int64? = nil, remember: Bool = false, ack: Bool = false)
    /// The client has shown every message up to this id.
    case ack(through: Int64)
    case guest(name: String)
    /// A message to a room (`general` or a group name) or, privately, to a user.
    case send(Target, text: String)
    /// A page of a room's (`room`) or private conversation's (`with`) history, newest last.
    case history(Target, before: Int64?, limit: Int?)
    /// A page of who is online, sorted by name, after the name `after`.
    case who(after: String? = nil, limit: Int? = nil)
    /// Be told exactly when these users come and go (adds to what the session follows).
    case follow([String])
    case unfollow([String])
    case ping
    /// The answer to a server's `ping`; gets no reply.
    case pong
    /// Every group, sorted by name, after the name `after`.
    case groups(after: String? = nil)
    /// The requester's groups, sorted by name, after the name `after`.
    case myGroups(after: String? = nil)
    /// A group's members, longest-standing first, after the member `after`.
    case groupMembers(group: String, after: String? = nil)
    /// A change to a group (`group_create`, `group_join`, … on the wire).
    case group(GroupCommand)
    /// Ends this session and forgets its login token; `everywhere`: revokes every login token of
    /// the account and closes all its sessions.
    case logout(everywhere: Bool = false)
    /// Changes the account's password (the current one is required); revokes every other login
    /// token and closes the account's other sessions.
    case changePassword(current: String, password: String)
    /// The requester's own sessions (transport, address, since).
    case sessions
    /// Ends one of the requester's own sessions (by the id `sessions` lists) and revokes its token.
    case endSession(Int)
    /// Forgets a login token, without logging in (a client that logged out while offline).
    case revoke(token: String)

    /// The wire name of each request type.
    public var type: String {
        switch self {
        case .register: "register"
        case .login: "login"
        case .ack: "ack"
        case .guest: "guest"
        case .send: "send"
        case .history: "history"
        case .who: "who"
        case .follow: "follow"
        case .unfollow: "unfollow"
        case .ping: "ping"
        case .pong: "pong"
        case .groups: "groups"
        case .myGroups: "my_groups"
        case .groupMembers: "group_members"
        case .group(let command):
            switch command {
            case .create: "group_create"
            case .join: "group_join"
            case .leave: "group_leave"
            case .invite: "group_invite"
            case .remove: "group_remove"
            case .setMode: "group_mode"
            case .transfer: "group_transfer"
            case .delete: "group_delete"
            }
        case .logout: "logout"
        case .changePassword: "change_password"
        case .sessions: "sessions"
        case .endSession: "end_session"
        case .revoke: "revoke"
        }
    }

    /// The group change this request asks for, if it is one.
    public var groupCommand: GroupCommand? {
        if case .group(let command) = self { return command }
        return nil
    }

    /// Whether the request is allowed before login (the command table's "pre-login" column).
    public var allowedBeforeLogin: Bool {
        switch self {
        case .register, .login, .guest, .ping, .pong, .revoke: true
        default: false
        }
    }
}

/// A request with the `id` its reply must echo.
/// Thread safety: a value type; `Sendable`.
public struct RequestEnvelope: Sendable, Hashable {
    public var id: RequestID?
    public var request: ClientRequest

    public init(id: RequestID? = nil, _ request: ClientRequest) {
        self.id = id
        self.request = request
    }
}
