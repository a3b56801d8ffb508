import ParleyCore

/// Everything a client can ask of the server. The JSON form is `{"type": <name>, "id": …, fields…}`;
/// docs/PROTOCOL.md lists each with its fields.
/// Thread safety: a value type; `Sendable`.
public enum ClientRequest: Sendable, Hashable {
    case register(username: String, password: String)
    /// `since`: replay what came after this message id instead of after the stored read position
    /// (a client that tracks what it has shown loses nothing in flight). `remember` (with a
    /// password): the welcome carries a login token for later logins without the password.
    case login(username: String, credential: Credential, since: Int64? = nil, remember: Bool = false)
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
    case groups
    case myGroups
    case groupCreate(group: String, inviteOnly: Bool)
    case groupJoin(group: String)
    case groupLeave(group: String)
    case groupMembers(group: String)
    case groupInvite(group: String, user: String)
    case groupRemove(group: String, user: String)
    case groupMode(group: String, inviteOnly: Bool)
    case groupTransfer(group: String, user: String)
    case groupDelete(group: String)
    case logout

    /// The wire name of each request type.
    public var type: String {
        switch self {
        case .register: "register"
        case .login: "login"
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
        case .groupCreate: "group_create"
        case .groupJoin: "group_join"
        case .groupLeave: "group_leave"
        case .groupMembers: "group_members"
        case .groupInvite: "group_invite"
        case .groupRemove: "group_remove"
        case .groupMode: "group_mode"
        case .groupTransfer: "group_transfer"
        case .groupDelete: "group_delete"
        case .logout: "logout"
        }
    }

    /// The group change this request asks for, if it is one.
    public var groupCommand: GroupCommand? {
        switch self {
        case .groupCreate(let group, let inviteOnly): .create(group: group, inviteOnly: inviteOnly)
        case .groupJoin(let group): .join(group: group)
        case .groupLeave(let group): .leave(group: group)
        case .groupInvite(let group, let user): .invite(group: group, user: user)
        case .groupRemove(let group, let user): .remove(group: group, user: user)
        case .groupMode(let group, let inviteOnly): .setMode(group: group, inviteOnly: inviteOnly)
        case .groupTransfer(let group, let user): .transfer(group: group, user: user)
        case .groupDelete(let group): .delete(group: group)
        default: nil
        }
    }

    /// Whether the request is allowed before login (the command table's "pre-login" column).
    public var allowedBeforeLogin: Bool {
        switch self {
        case .register, .login, .guest, .ping, .pong: true
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
