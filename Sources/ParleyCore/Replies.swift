/// One line of a group listing.
/// Thread safety: a value type; `Sendable`.
public struct GroupInfo: Codable, Sendable, Hashable {
    public var name: String
    public var owner: String
    public var members: Int
    public var inviteOnly: Bool
    /// Whether the asking user is a member.
    public var joined: Bool

    public init(name: String, owner: String, members: Int, inviteOnly: Bool, joined: Bool) {
        self.name = name
        self.owner = owner
        self.members = members
        self.inviteOnly = inviteOnly
        self.joined = joined
    }
}

/// One member of a group, with whether they are online.
/// Thread safety: a value type; `Sendable`.
public struct MemberInfo: Codable, Sendable, Hashable {
    public var username: String
    public var online: Bool
    public var owner: Bool

    public init(username: String, online: Bool, owner: Bool) {
        self.username = username
        self.online = online
        self.owner = owner
    }
}

/// A group's members, longest-standing first.
/// Thread safety: a value type; `Sendable`.
public struct GroupMembers: Sendable, Hashable {
    public var group: String
    public var owner: String
    public var inviteOnly: Bool
    public var members: [MemberInfo]

    public init(group: String, owner: String, inviteOnly: Bool, members: [MemberInfo]) {
        self.group = group
        self.owner = owner
        self.inviteOnly = inviteOnly
        self.members = members
    }
}

/// A page of a room's history, oldest first.
/// Thread safety: a value type; `Sendable`.
public struct HistoryPage: Sendable, Hashable {
    /// `general`, the group's name, or (with ``isPrivate``) the other user's name.
    public var name: String
    public var isPrivate: Bool
    public var messages: [StoredMessage]
    /// Whether older messages exist.
    public var more: Bool

    public init(name: String, isPrivate: Bool, messages: [StoredMessage], more: Bool) {
        self.name = name
        self.isPrivate = isPrivate
        self.messages = messages
        self.more = more
    }
}

/// A page of who is online, sorted case-insensitively.
/// Thread safety: a value type; `Sendable`.
public struct OnlinePage: Sendable, Hashable {
    public var users: [String]
    /// Everyone online, not only this page.
    public var count: Int
    /// Whether names after the last one on this page exist.
    public var more: Bool

    public init(users: [String], count: Int, more: Bool) {
        self.users = users
        self.count = count
        self.more = more
    }
}
