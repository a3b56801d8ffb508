import NIOCore
import ParleyCore
import ParleyStore

extension Hub {
    /// Checks and queues a message for storage; once stored it is delivered to the room and
    /// acknowledged to the sender (see ``dispatchCommitted()``). Runs on the session's loop.
    func send(_ target: Target, text: String, id: RequestID?, from session: Session) throws(ParleyError) {
        try limits.validateText(text)
        let me = session.identity
        let place = try state.withLock { s throws(ParleyError) in
            if s.shuttingDown { throw ParleyError(.shuttingDown, "the server is shutting down; the message was not sent") }
            return try s.resolve(target, for: me)
        }
        let message = NewMessage(sender: me.name, senderKey: me.storageKey, room: place.room, roomName: place.name,
                                 peerKey: place.peer?.storageKey, text: text)
        session.sendStarted()
        commits.enqueue(.message(message) { [self] result in
            switch result {
            case .success(let stored):
                committed.withLock { $0.append(Committed(message: stored, sender: session, requestID: id)) }
            case .failure(let error):
                metrics.error(.storageFailed)
                session.logger.error("storing a message failed", metadata: ["error": "\(error)"])
                session.loop.execute { session.sendFinished() }
                session.sendEncoded(session.encoder.encodeError(
                    ParleyError(.storageFailed, "the message could not be stored; it was not sent"), id: id, allocator: allocator))
            }
        })
        // Past the commit queue's bound, this sender waits (TCP pushes back) until the backlog
        // halves; its own message is in the queue, so a batch hook will see it (``resumeSenders()``).
        let limit = configuration.maxCommitBacklog
        let wait = waitingForStorage.withLock { list -> Bool in
            guard commits.backlog > limit else { return false }
            list.append(session)
            return true
        }
        if wait { session.waitForStorage() }
    }

    /// After a batch: once the commit backlog is down to half its bound, the senders paused for
    /// it read on. On the commit queue's thread.
    func resumeSenders() {
        let limit = configuration.maxCommitBacklog
        let ready = waitingForStorage.withLock { list -> [Session] in
            guard !list.isEmpty, commits.backlog <= limit / 2 else { return [] }
            defer { list.removeAll() }
            return list
        }
        for session in ready { session.loop.execute { session.storageCaughtUp() } }
    }

    /// A page of history: up to `limit` messages before `before`, oldest first, with `more` set
    /// when older ones exist. Only rooms the user may read.
    func history(_ target: Target, before: Int64?, limit: Int?, for session: Session) -> EventLoopFuture<HistoryPage> {
        let loop = session.loop
        let me = session.identity
        let pageSize = limit ?? 50
        let place: HubState.Place
        do {
            if pageSize < 1 || pageSize > limits.maxHistoryPage {
                throw ParleyError(.badRequest, "'limit' must be between 1 and \(limits.maxHistoryPage)")
            }
            if me.isGuest, case .with = target {
                throw ParleyError(.guestNotAllowed, "guests have no stored private conversations")
            }
            place = try state.withLock { s throws(ParleyError) in
                if s.shuttingDown { throw ParleyError(.shuttingDown, "the server is shutting down") }
                return try s.resolve(target, for: me)
            }
        } catch {
            return loop.makeFailedFuture(error)
        }
        let storage = self.storage
        return offload(on: loop) {
            let page = try storage.history(place.room, before: before, limit: pageSize + 1)
            return HistoryPage(name: place.name, isPrivate: place.peer != nil, messages: Array(page.suffix(pageSize)), more: page.count > pageSize)
        }
    }
}

extension HubState {
    /// Where a `send` or `history` request points, once checked.
    struct Place: Sendable {
        var room: Room
        /// `general`, the group's name, or the other user's name.
        var name: String
        /// The other user of a private conversation.
        var peer: Identity?
    }

    /// Resolves a request's room or user to a place `me` may use: the general room, a group `me`
    /// is a member of (`NO_SUCH_GROUP`, `NOT_A_MEMBER`), or a private conversation with a known
    /// user (`USER_NOT_FOUND`).
    func resolve(_ target: Target, for me: Identity) throws(ParleyError) -> Place {
        switch target {
        case .room(let name) where Names.key(name) == Room.generalName:
            return Place(room: .general, name: Room.generalName)
        case .room(let name):
            let group = try member(of: name, me)
            return Place(room: group.room, name: group.name)
        case .with(let name):
            let peer = try peer(named: name)
            return Place(room: .direct(between: me.storageKey, and: peer.storageKey), name: peer.name, peer: peer)
        }
    }

    /// The group named `name`, if `me` is a member.
    func member(of name: String, _ me: Identity) throws(ParleyError) -> Group {
        guard let group = directory.group(named: name) else {
            throw ParleyError(.noSuchGroup, "there is no group '\(name)'")
        }
        guard group.isMember(me.key) else {
            throw ParleyError(.notAMember, "you are not a member of '\(group.name)'")
        }
        return group
    }

    /// A user one can write to: any account, or a guest who is online.
    func peer(named name: String) throws(ParleyError) -> Identity {
        let key = Names.key(name)
        if let registered = accounts[key] { return .account(AccountIdentity(name: registered)) }
        if let user = users[key] { return user.identity }
        throw ParleyError(.userNotFound, "there is no user '\(name)'")
    }
}
