import NIOCore
import ParleyCore
import ParleyStore
import ParleyWire

extension Hub {
    /// Runs a group command: decides under the lock, stores the change, then answers the
    /// requester and tells the members. The future completes on `session.loop`.
    func groupCommand(_ request: ClientRequest, id: RequestID?, from session: Session) -> EventLoopFuture<ServerFrame> {
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
                switch request {
                case .groupCreate(let group, let inviteOnly): result = try s.directory.create(group, by: me.key, inviteOnly: inviteOnly)
                case .groupJoin(let group): result = try s.directory.join(group, user: me.key)
                case .groupLeave(let group): result = try s.directory.leave(group, user: me.key)
                case .groupInvite(let group, let user):
                    let target = try s.account(named: user)
                    invitee = target
                    result = try s.directory.invite(target, to: group, by: me.key)
                case .groupRemove(let group, let user): result = try s.directory.remove(try s.account(named: user), from: group, by: me.key)
                case .groupMode(let group, let inviteOnly): result = try s.directory.setInviteOnly(inviteOnly, for: group, by: me.key)
                case .groupTransfer(let group, let user): result = try s.directory.transfer(group, to: try s.account(named: user), by: me.key)
                case .groupDelete(let group): result = try s.directory.delete(group, by: me.key)
                default: throw ParleyError(.badRequest, "not a group command")
                }
                s.invalidateSnapshots()
                return result
            }
        } catch {
            return loop.makeFailedFuture(error)
        }
        let promise = loop.makePromise(of: ServerFrame.self)
        let invited = invitee
        store.commits.enqueue(.groups(outcome.mutations) { [self] result in
            switch result {
            case .failure(let error):
                logger.error("storing a group change failed", metadata: ["error": "\(error)", "group": "\(outcome.group.name)"])
                promise.fail(ParleyError(.storageFailed, "the change could not be stored"))
            case .success:
                let names = state.withLock { $0.accounts }
                for notice in outcome.notices {
                    notify(Self.frame(for: notice.event, group: outcome.group, names: names), users: notice.recipients)
                }
                if let invitee = invited {
                    var frame = ServerFrame(type: "invited")
                    frame.group = outcome.group.name
                    frame.by = me.name
                    notify(frame, users: [invitee])
                }
                var reply = ServerFrame.ok(id: id)
                reply.group = outcome.group.name
                promise.succeed(reply)
            }
        })
        return promise.futureResult
    }

    /// The frame members receive for a group event.
    static func frame(for event: GroupEvent, group: Group, names: [String: String]) -> ServerFrame {
        var frame = ServerFrame(type: "group")
        frame.group = group.name
        func name(_ key: String) -> String { names[key] ?? key }
        switch event {
        case .joined(let user):
            frame.event = "joined"
            frame.username = name(user)
        case .left(let user):
            frame.event = "left"
            frame.username = name(user)
        case .removed(let user, let by):
            frame.event = "removed"
            frame.username = name(user)
            frame.by = name(by)
        case .ownerChanged(let user):
            frame.event = "owner"
            frame.username = name(user)
        case .modeChanged(let inviteOnly):
            frame.event = "mode"
            frame.inviteOnly = inviteOnly
        case .deleted:
            frame.event = "deleted"
        }
        return frame
    }

    /// `groups` (every group) or `my_groups` (the requester's).
    func groupList(mine: Bool, id: RequestID?, for session: Session) -> ServerFrame {
        let me = session.identity.key
        var frame = ServerFrame(type: "groups", id: id)
        frame.groups = state.withLock { s in
            s.directory.all.filter { !mine || $0.isMember(me) }.map { g in
                GroupInfo(name: g.name, owner: s.accounts[g.owner] ?? g.owner, members: g.members.count,
                          inviteOnly: g.inviteOnly, joined: g.isMember(me))
            }
        }
        return frame
    }

    /// A group's members, longest-standing first, with who is online. Members only.
    func groupMembers(_ name: String, id: RequestID?, for session: Session) throws(ParleyError) -> ServerFrame {
        try state.withLock { s throws(ParleyError) in
            let group = try s.member(of: name, session.identity)
            var frame = ServerFrame(type: "members", id: id)
            frame.group = group.name
            frame.owner = s.accounts[group.owner] ?? group.owner
            frame.inviteOnly = group.inviteOnly
            frame.members = group.members.map { key in
                MemberInfo(username: s.accounts[key] ?? key, online: s.online[key] != nil, owner: key == group.owner)
            }
            return frame
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
