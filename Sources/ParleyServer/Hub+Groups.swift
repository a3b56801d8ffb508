import Logging
import NIOCore
import ParleyCore
import ParleyStore

extension Hub {
    /// Runs a group command, database first: group commands run one at a time (``groupChanges``);
    /// each is decided on a copy of the directory, stored, and only once the store has accepted
    /// it does the copy replace the directory in memory; then the members are told. A store
    /// failure leaves everything as it was and answers `STORAGE_FAILED`.
    /// The future completes on `session.loop` with the group's name.
    func groupCommand(_ command: GroupCommand, from session: Session) -> EventLoopFuture<String> {
        let loop = session.loop
        guard let me = session.identity.account else {
            return loop.makeFailedFuture(ParleyError(.guestNotAllowed, "guests cannot use groups; register an account"))
        }
        let promise = loop.makePromise(of: String.self)
        groupChanges.run { [self] done in
            let decided: (GroupDirectory, GroupDirectory.Outcome, String?)
            do {
                decided = try state.withLock { s throws(ParleyError) in
                    if s.shuttingDown { throw ParleyError(.shuttingDown, "the server is shutting down; nothing was changed") }
                    return try Self.decide(command, by: me.key, in: s)
                }
            } catch {
                promise.fail(error)
                done()
                return
            }
            let (directory, outcome, invitee) = decided
            commits.enqueue(.groups(outcome.mutations) { [self] result in
                switch result {
                case .failure(let error):
                    logger.error("storing a group change failed", metadata: ["error": "\(error)", "group": "\(outcome.group.name)"])
                    done()
                    promise.fail(ParleyError(.storageFailed, "the change could not be stored"))
                case .success:
                    // Only group commands change the directory, one at a time: the copy is the
                    // directory as it was plus this change.
                    let names = state.withLock { s in
                        s.directory = directory
                        s.apply(outcome.mutations)
                        return s.accounts
                    }
                    done()
                    let (change, target) = command.logged
                    var metadata: Logger.Metadata = ["user": "\(me.name)", "group": "\(outcome.group.name)", "change": "\(change)"]
                    if let target { metadata["target"] = "\(target)" }
                    logger.info("group changed", metadata: metadata)
                    for notice in outcome.notices {
                        notify(.group(name: outcome.group.name, Self.shown(notice.event, names: names)), users: notice.recipients)
                    }
                    if let invitee {
                        notify(.invited(group: outcome.group.name, by: me.name), users: [invitee])
                    }
                    promise.succeed(outcome.group.name)
                }
            })
        }
        return promise.futureResult
    }

    /// Decides `command` on a copy of the directory: the directory as it would be, what to store,
    /// whom to tell, and (for an invitation) whom to tell that they were invited.
    static func decide(_ command: GroupCommand, by me: String, in s: HubState) throws(ParleyError)
        -> (GroupDirectory, GroupDirectory.Outcome, String?) {
        var directory = s.directory
        var invitee: String? = nil
        let outcome: GroupDirectory.Outcome
        switch command {
        case .create(let group, let inviteOnly): outcome = try directory.create(group, by: me, inviteOnly: inviteOnly)
        case .join(let group): outcome = try directory.join(group, user: me)
        case .leave(let group): outcome = try directory.leave(group, user: me)
        case .invite(let group, let user):
            let target = try s.account(named: user)
            invitee = target
            outcome = try directory.invite(target, to: group, by: me)
        case .remove(let group, let user): outcome = try directory.remove(try s.account(named: user), from: group, by: me)
        case .setMode(let group, let inviteOnly): outcome = try directory.setInviteOnly(inviteOnly, for: group, by: me)
        case .transfer(let group, let user): outcome = try directory.transfer(group, to: try s.account(named: user), by: me)
        case .delete(let group): outcome = try directory.delete(group, by: me)
        }
        return (directory, outcome, invitee)
    }

    /// A group event with user keys replaced by names as registered.
    static func shown(_ event: GroupEvent, names: [String: String]) -> GroupEvent {
        func name(_ key: String) -> String { names[key] ?? key }
        switch event {
        case .joined(let user): return .joined(user: name(user))
        case .left(let user): return .left(user: name(user))
        case .removed(let user, let by): return .removed(user: name(user), by: name(by))
        case .ownerChanged(let user): return .ownerChanged(user: name(user))
        case .modeChanged, .deleted: return event
        }
    }

    /// Every group, or (`mine`) the requester's, sorted by name, after the name `after`.
    func groupList(mine: Bool, after: String? = nil, for session: Session) -> [GroupInfo] {
        let me = session.identity.key
        let start = after.map(Names.key)
        return state.withLock { s in
            // An invite-only group is listed only to its members and to those invited.
            (mine ? s.directory.groups(of: me) : s.directory.all).filter {
                (start == nil || $0.key > start!) && (!$0.inviteOnly || $0.isMember(me) || $0.invited.contains(me))
            }.map { g in
                GroupInfo(name: g.name, owner: s.accounts[g.owner] ?? g.owner, members: g.members.count,
                          inviteOnly: g.inviteOnly, joined: g.isMember(me))
            }
        }
    }

    /// A group's members, longest-standing first, with who is online, after the member
    /// `after` (all of them when it is not a member). Members only.
    func groupMembers(_ name: String, after: String? = nil, for session: Session) throws(ParleyError) -> GroupMembers {
        try state.withLock { s throws(ParleyError) in
            let group = try s.member(of: name, session.identity)
            var members = Array(group.members)
            if let after, let index = members.firstIndex(of: Names.key(after)) { members.removeFirst(index + 1) }
            return GroupMembers(
                group: group.name, owner: s.accounts[group.owner] ?? group.owner, inviteOnly: group.inviteOnly,
                members: members.map { key in
                    MemberInfo(username: s.accounts[key] ?? key, online: s.users[key] != nil, owner: key == group.owner)
                })
        }
    }
}

extension HubState {
    /// The key of a registered account named `name`.
    func account(named name: String) throws(ParleyError) -> String {
        let key = Names.key(name)
        guard accounts[key] != nil else { throw ParleyError(.userNotFound, "there is no user '\(name)'") }
        return key
    }
}
