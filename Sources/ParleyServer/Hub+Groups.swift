import NIOCore
import ParleyCore
import ParleyStore

extension Hub {
    /// Runs a group command: decides under the lock, stores the change, then tells the members.
    /// The future completes on `session.loop` with the group's name.
    func groupCommand(_ command: GroupCommand, from session: Session) -> EventLoopFuture<String> {
        let loop = session.loop
        let me = session.identity
        guard !me.guest else {
            return loop.makeFailedFuture(ParleyError(.guestNotAllowed, "guests cannot use groups; register an account"))
        }
        let outcome: GroupDirectory.Outcome
        var invitee: String? = nil
        do {
            outcome = try state.withLock { s throws(ParleyError) -> GroupDirectory.Outcome in
                let result: GroupDirectory.Outcome
                switch command {
                case .create(let group, let inviteOnly): result = try s.directory.create(group, by: me.key, inviteOnly: inviteOnly)
                case .join(let group): result = try s.directory.join(group, user: me.key)
                case .leave(let group): result = try s.directory.leave(group, user: me.key)
                case .invite(let group, let user):
                    let target = try s.account(named: user)
                    invitee = target
                    result = try s.directory.invite(target, to: group, by: me.key)
                case .remove(let group, let user): result = try s.directory.remove(try s.account(named: user), from: group, by: me.key)
                case .setMode(let group, let inviteOnly): result = try s.directory.setInviteOnly(inviteOnly, for: group, by: me.key)
                case .transfer(let group, let user): result = try s.directory.transfer(group, to: try s.account(named: user), by: me.key)
                case .delete(let group): result = try s.directory.delete(group, by: me.key)
                }
                s.apply(result.mutations)
                return result
            }
        } catch {
            return loop.makeFailedFuture(error)
        }
        let promise = loop.makePromise(of: String.self)
        let invited = invitee
        commits.enqueue(.groups(outcome.mutations) { [self] result in
            switch result {
            case .failure(let error):
                logger.error("storing a group change failed", metadata: ["error": "\(error)", "group": "\(outcome.group.name)"])
                promise.fail(ParleyError(.storageFailed, "the change could not be stored"))
            case .success:
                let names = state.withLock { $0.accounts }
                for notice in outcome.notices {
                    notify(.group(name: outcome.group.name, Self.shown(notice.event, names: names)), users: notice.recipients)
                }
                if let invitee = invited {
                    notify(.invited(group: outcome.group.name, by: me.name), users: [invitee])
                }
                promise.succeed(outcome.group.name)
            }
        })
        return promise.futureResult
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

    /// Every group, or (`mine`) the requester's, sorted by name.
    func groupList(mine: Bool, for session: Session) -> [GroupInfo] {
        let me = session.identity.key
        return state.withLock { s in
            (mine ? s.directory.groups(of: me) : s.directory.all).map { g in
                GroupInfo(name: g.name, owner: s.accounts[g.owner] ?? g.owner, members: g.members.count,
                          inviteOnly: g.inviteOnly, joined: g.isMember(me))
            }
        }
    }

    /// A group's members, longest-standing first, with who is online. Members only.
    func groupMembers(_ name: String, for session: Session) throws(ParleyError) -> GroupMembers {
        try state.withLock { s throws(ParleyError) in
            let group = try s.member(of: name, session.identity)
            return GroupMembers(
                group: group.name, owner: s.accounts[group.owner] ?? group.owner, inviteOnly: group.inviteOnly,
                members: group.members.map { key in
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
