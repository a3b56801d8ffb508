import Collections

/// A group: a room with an owner and members, open or invite-only.
/// Thread safety: a value type; `Sendable`.
public struct Group: Sendable, Hashable {
    public let id: Int64
    /// The name as created; ``key`` is its case-folded form.
    public let name: String
    public var key: String { Names.key(name) }
    /// The owner's user key.
    public var owner: String
    public var inviteOnly: Bool
    /// Member user keys, longest-standing first (ordered, with constant-time lookup).
    public var members: OrderedSet<String>
    /// User keys holding an unused invitation.
    public var invited: Set<String>

    public init(id: Int64, name: String, owner: String, inviteOnly: Bool, members: [String], invited: Set<String> = []) {
        self.id = id
        self.name = name
        self.owner = owner
        self.inviteOnly = inviteOnly
        self.members = OrderedSet(members)
        self.invited = invited
    }

    public func isMember(_ user: String) -> Bool { members.contains(user) }
    public var room: Room { .group(id: id) }
}

/// A change to stored group state, in the order it must be applied.
/// The store turns each into SQL; the directory only says what changed.
/// Thread safety: a value type; `Sendable`.
public enum GroupMutation: Sendable, Hashable {
    case create(Group)
    case addMember(groupID: Int64, user: String)
    case removeMember(groupID: Int64, user: String)
    case setOwner(groupID: Int64, user: String)
    case setInviteOnly(groupID: Int64, Bool)
    case addInvitation(groupID: Int64, user: String, by: String)
    case removeInvitation(groupID: Int64, user: String)
    case delete(groupID: Int64)
}

/// What members are told about a change to a group.
/// Thread safety: a value type; `Sendable`.
public enum GroupEvent: Sendable, Hashable {
    case joined(user: String)
    case left(user: String)
    case removed(user: String, by: String)
    case ownerChanged(user: String)
    case modeChanged(inviteOnly: Bool)
    case deleted
}
