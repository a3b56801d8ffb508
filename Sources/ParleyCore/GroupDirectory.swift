/// All groups, their owners, members and invitations: the pure state machine behind group commands.
///
/// Each command validates, mutates, and returns a ``GroupDirectory/Outcome`` that says what to
/// store and whom to tell; it performs no I/O. Names of users are their case-folded keys.
/// Thread safety: a value type; the server keeps one inside its hub's lock.
public struct GroupDirectory: Sendable {
    /// The result of a successful command.
    public struct Outcome: Sendable, Hashable {
        /// The group after the change (for `delete`, as it was before).
        public var group: Group
        /// What to persist, in order.
        public var mutations: [GroupMutation]
        /// Events to send, each with the user keys that should receive it.
        public var notices: [Notice]
    }

    /// An event for a set of users.
    public struct Notice: Sendable, Hashable {
        public var event: GroupEvent
        public var recipients: [String]

        public init(event: GroupEvent, recipients: [String]) {
            self.event = event
            self.recipients = recipients
        }
    }

    private var byKey: [String: Group] = [:]
    /// Group key by id.
    private var keyByID: [Int64: String] = [:]
    /// The ids of each user's groups.
    private var memberships: [String: Set<Int64>] = [:]
    private var nextID: Int64

    /// - Parameters:
    ///   - groups: groups loaded from storage.
    ///   - nextID: the id the next created group gets (greater than any id ever used).
    public init(groups: [Group] = [], nextID: Int64 = 1) {
        self.nextID = max(nextID, (groups.map(\.id).max() ?? 0) + 1)
        for group in groups { store(group) }
    }

    /// Every group, sorted by key.
    public var all: [Group] { byKey.values.sorted { $0.key < $1.key } }
    public var count: Int { byKey.count }
    public func group(named name: String) -> Group? { byKey[Names.key(name)] }
    public func group(id: Int64) -> Group? { keyByID[id].flatMap { byKey[$0] } }
    /// The ids of the groups `user` is a member of.
    public func groupIDs(of user: String) -> Set<Int64> { memberships[user] ?? [] }
    /// The groups `user` is a member of, sorted by key.
    public func groups(of user: String) -> [Group] {
        groupIDs(of: user).compactMap { group(id: $0) }.sorted { $0.key < $1.key }
    }

    /// Puts `group` in place of its previous state, keeping the indexes up to date.
    private mutating func store(_ group: Group) {
        if let old = byKey[group.key] {
            for user in old.members where !group.members.contains(user) { unindex(user, group.id) }
        }
        byKey[group.key] = group
        keyByID[group.id] = group.key
        for user in group.members { memberships[user, default: []].insert(group.id) }
    }

    private mutating func discard(_ group: Group) {
        guard let old = byKey.removeValue(forKey: group.key) else { return }
        keyByID[old.id] = nil
        for user in old.members { unindex(user, old.id) }
    }

    private mutating func unindex(_ user: String, _ id: Int64) {
        memberships[user]?.remove(id)
        if memberships[user]?.isEmpty == true { memberships[user] = nil }
    }

    private func existing(_ name: String) throws(ParleyError) -> Group {
        guard let group = byKey[Names.key(name)] else {
            throw ParleyError(.noSuchGroup, "there is no group '\(name)'")
        }
        return group
    }

    private func owned(_ name: String, by user: String) throws(ParleyError) -> Group {
        let group = try existing(name)
        guard group.owner == user else {
            throw ParleyError(.notOwner, "only the owner of '\(group.name)' can do that")
        }
        return group
    }

    /// Creates a group owned by `user`, who becomes its first member.
    public mutating func create(_ name: String, by user: String, inviteOnly: Bool = false) throws(ParleyError) -> Outcome {
        try Names.validateGroupName(name)
        guard byKey[Names.key(name)] == nil else {
            throw ParleyError(.groupExists, "a group named '\(name)' already exists")
        }
        let group = Group(id: nextID, name: name, owner: user, inviteOnly: inviteOnly, members: [user])
        nextID += 1
        store(group)
        return Outcome(group: group, mutations: [.create(group)], notices: [])
    }

    /// Adds `user` to an open group, or to an invite-only group they were invited to.
    public mutating func join(_ name: String, user: String) throws(ParleyError) -> Outcome {
        var group = try existing(name)
        guard !group.isMember(user) else {
            throw ParleyError(.alreadyMember, "you are already in '\(group.name)'")
        }
        var mutations: [GroupMutation] = []
        if group.invited.contains(user) {
            group.invited.remove(user)
            mutations.append(.removeInvitation(groupID: group.id, user: user))
        } else if group.inviteOnly {
            throw ParleyError(.inviteOnly, "'\(group.name)' is invite-only")
        }
        group.members.append(user)
        mutations.append(.addMember(groupID: group.id, user: user))
        store(group)
        return Outcome(group: group, mutations: mutations, notices: [Notice(event: .joined(user: user), recipients: group.members.elements)])
    }

    /// Removes `user`; an owner who leaves hands the group to the longest-standing member,
    /// and a group left empty is deleted.
    public mutating func leave(_ name: String, user: String) throws(ParleyError) -> Outcome {
        var group = try existing(name)
        guard group.isMember(user) else {
            throw ParleyError(.notAMember, "you are not in '\(group.name)'")
        }
        return departure(of: user, from: &group, event: .left(user: user))
    }

    /// The owner removes another member.
    public mutating func remove(_ target: String, from name: String, by user: String) throws(ParleyError) -> Outcome {
        var group = try owned(name, by: user)
        guard target != user else {
            throw ParleyError(.badRequest, "to leave your own group use group_leave")
        }
        guard group.isMember(target) else {
            throw ParleyError(.notAMember, "\(target) is not in '\(group.name)'")
        }
        return departure(of: target, from: &group, event: .removed(user: target, by: user))
    }

    private mutating func departure(of user: String, from group: inout Group, event: GroupEvent) -> Outcome {
        let before = group.members
        group.members.remove(user)
        if group.members.isEmpty {
            discard(group)
            return Outcome(
                group: group,
                mutations: [.removeMember(groupID: group.id, user: user), .delete(groupID: group.id)],
                notices: [Notice(event: event, recipients: before.elements)])
        }
        var mutations: [GroupMutation] = [.removeMember(groupID: group.id, user: user)]
        var notices = [Notice(event: event, recipients: before.elements)]
        if group.owner == user {
            group.owner = group.members[0]
            mutations.append(.setOwner(groupID: group.id, user: group.owner))
            notices.append(Notice(event: .ownerChanged(user: group.owner), recipients: group.members.elements))
        }
        store(group)
        return Outcome(group: group, mutations: mutations, notices: notices)
    }

    /// The owner invites `target` (who must be a registered user; the caller checks that).
    public mutating func invite(_ target: String, to name: String, by user: String) throws(ParleyError) -> Outcome {
        var group = try owned(name, by: user)
        guard !group.isMember(target) else {
            throw ParleyError(.alreadyMember, "\(target) is already in '\(group.name)'")
        }
        group.invited.insert(target)
        store(group)
        return Outcome(group: group, mutations: [.addInvitation(groupID: group.id, user: target, by: user)], notices: [])
    }

    /// The owner makes the group invite-only or open.
    public mutating func setInviteOnly(_ inviteOnly: Bool, for name: String, by user: String) throws(ParleyError) -> Outcome {
        var group = try owned(name, by: user)
        group.inviteOnly = inviteOnly
        store(group)
        return Outcome(
            group: group, mutations: [.setInviteOnly(groupID: group.id, inviteOnly)],
            notices: [Notice(event: .modeChanged(inviteOnly: inviteOnly), recipients: group.members.elements)])
    }

    /// The owner hands the group to another member.
    public mutating func transfer(_ name: String, to target: String, by user: String) throws(ParleyError) -> Outcome {
        var group = try owned(name, by: user)
        guard group.isMember(target) else {
            throw ParleyError(.notAMember, "\(target) is not in '\(group.name)'")
        }
        group.owner = target
        store(group)
        return Outcome(
            group: group, mutations: [.setOwner(groupID: group.id, user: target)],
            notices: [Notice(event: .ownerChanged(user: target), recipients: group.members.elements)])
    }

    /// The owner deletes the group.
    public mutating func delete(_ name: String, by user: String) throws(ParleyError) -> Outcome {
        let group = try owned(name, by: user)
        discard(group)
        return Outcome(group: group, mutations: [.delete(groupID: group.id)], notices: [Notice(event: .deleted, recipients: group.members.elements)])
    }
}
