import Foundation
import HummingbirdBcrypt
import NIOCore
import ParleyCore
import ParleyStore
import ParleyWire

extension Hub {
    /// What a login hands back: the new session and what to replay to it.
    struct Attached {
        var session: Session
        var rooms: [Room]
        var after: Int64
        var through: Int64
        var first: Bool
    }

    /// Registers an account. Hashing runs on the thread pool; the future completes on `loop`.
    func register(name: String, password: String, id: RequestID?, on loop: any EventLoop) -> EventLoopFuture<ServerFrame> {
        do {
            guard configuration.registration else {
                throw ParleyError(.registrationClosed, "this server does not accept new registrations")
            }
            try Names.validateUsername(name)
            try limits.validatePassword(password)
            try state.withLock { s throws(ParleyError) in
                if s.shuttingDown { throw ParleyError(.shuttingDown, "the server is shutting down") }
                if s.isTaken(Names.key(name)) { throw ParleyError(.usernameExists, "the username '\(name)' is taken") }
            }
        } catch {
            return loop.makeFailedFuture(error)
        }
        let cost = configuration.bcryptCost
        let store = self.store
        return offload(on: loop) {
            let hash = Bcrypt.hash(password, cost: cost)
            return try store.createAccount(name: name, passwordHash: hash, now: .now)
        }.flatMapThrowing { created in
            guard created else { throw ParleyError(.usernameExists, "the username '\(name)' is taken") }
            self.state.withLock { $0.accounts[Names.key(name)] = name }
            self.logger.info("registered", metadata: ["user": "\(name)"])
            var frame = ServerFrame(type: "registered", id: id)
            frame.result = "REGISTER_SUCCESS"
            frame.username = name
            return frame
        }
    }

    /// Checks a password (on the thread pool) and attaches a new session for `channel`.
    func login(name: String, password: String, since: Int64? = nil, address: String, channel: any Channel) -> EventLoopFuture<Attached> {
        let loop = channel.eventLoop
        let key = Names.key(name)
        let throttleKeys = ["user:" + key, "addr:" + address]
        let now = Date().timeIntervalSince1970
        if let wait = state.withLock({ $0.shuttingDown ? -1 : $0.throttle.retryAfter(throttleKeys, now: now) }) {
            if wait < 0 { return loop.makeFailedFuture(ParleyError(.shuttingDown, "the server is shutting down")) }
            return loop.makeFailedFuture(
                ParleyError(.rateLimited, "too many failed logins; try again in \(Int(wait.rounded(.up))) s"))
        }
        let store = self.store
        let dummy = dummyHash
        return offload(on: loop) { () -> Account? in
            let account = try store.account(key)
            let valid = Bcrypt.verify(password, hash: account?.passwordHash ?? dummy)
            return valid ? account : nil
        }.flatMapThrowing { account in
            let now = Date().timeIntervalSince1970
            guard let account else {
                self.state.withLock { $0.throttle.failed(throttleKeys, now: now) }
                self.logger.info("failed login", metadata: ["user": "\(name)", "address": "\(address)"])
                throw ParleyError(.invalidCredentials, "wrong username or password")
            }
            self.state.withLock { $0.throttle.succeeded("user:" + key) }
            return try self.attach(Identity(name: account.name, guest: false), channel: channel, storedLastRead: account.lastRead, since: since)
        }
    }

    /// Logs in a guest under `wanted`, or under `wanted` with a numeric suffix when it is taken.
    func guest(wanted: String, channel: any Channel) throws(ParleyError) -> Attached {
        guard configuration.guests else {
            throw ParleyError(.guestsDisabled, "this server does not allow guests; register an account")
        }
        try Names.validateUsername(wanted)
        return try attach(nil, wanted: wanted, channel: channel, storedLastRead: 0)
    }

    func attach(_ identity: Identity?, wanted: String = "", channel: any Channel, storedLastRead: Int64, since: Int64? = nil) throws(ParleyError) -> Attached {
        let sessionID = nextSessionID.add(1, ordering: .relaxed).oldValue
        let loopIndex = loopIndex(of: channel.eventLoop)
        let attached = try state.withLock { s throws(ParleyError) -> Attached in
            if s.shuttingDown { throw ParleyError(.shuttingDown, "the server is shutting down") }
            let who = identity ?? Identity(name: Names.guestName(for: wanted, isTaken: s.isTaken), guest: true)
            let session = Session(
                id: sessionID, identity: who, channel: channel, loopIndex: loopIndex, watermark: s.lastDispatched,
                limits: configuration.limits, maxInflight: configuration.maxInflight, logger: logger)
            s.online[who.key, default: []].append(session)
            s.everyone.append(session)
            s.invalidateSnapshots()
            let rooms = [Room.general] + s.directory.groups(of: who.key).map(\.room)
            let after = who.guest ? 0 : since.map { max($0, 0) } ?? max(storedLastRead, s.lastRead[who.key] ?? 0)
            return Attached(session: session, rooms: rooms, after: after, through: s.lastDispatched, first: s.online[who.key]!.count == 1)
        }
        let session = attached.session
        session.logger.info("logged in", metadata: ["guest": "\(session.identity.guest)"])
        if attached.first { broadcastPresence(of: session.identity, online: true) }
        return attached
    }

    /// Reads what the session missed and writes it, marked as replay, before any live message.
    func replay(_ attached: Attached) {
        let session = attached.session
        let store = self.store
        let cap = limits.replayLimit
        let guest = session.identity.guest
        let key = session.identity.storageKey
        offload(on: session.loop) { () -> [StoredMessage] in
            return try store.missed(user: key, rooms: attached.rooms, after: attached.after, through: attached.through, perRoom: cap, directs: !guest)
        }.whenComplete { result in
            let messages = (try? result.get()) ?? []
            if case .failure(let error) = result {
                session.logger.error("replay failed", metadata: ["error": "\(error)"])
            }
            for message in messages {
                session.channel.write(ServerFrame.messageFrame(message, replay: true, allocator: session.channel.allocator), promise: nil)
            }
            var end = ServerFrame(type: "replay_end")
            end.count = messages.count
            session.channel.writeAndFlush(end.frame(allocator: session.channel.allocator), promise: nil)
            session.finishReplay(through: attached.through)
        }
    }

    /// Removes a session whose connection closed; the user goes offline with their last one.
    func detach(_ session: Session) {
        let lastDelivered = session.lastDelivered
        let key = session.identity.key
        let last = state.withLock { s -> Bool in
            s.online[key]?.removeAll { $0 === session }
            s.everyone.removeAll { $0 === session }
            s.invalidateSnapshots()
            if !session.identity.guest { s.lastRead[key] = max(s.lastRead[key] ?? 0, lastDelivered) }
            if s.online[key]?.isEmpty ?? false {
                s.online[key] = nil
                return true
            }
            return false
        }
        if !session.identity.guest {
            store.commits.enqueue(.readPosition(user: key, messageID: lastDelivered))
        }
        session.logger.info("session ended")
        if last { broadcastPresence(of: session.identity, online: false) }
    }

    /// The names of everyone online, sorted case-insensitively.
    func onlineNames() -> [String] {
        state.withLock { s in s.online.values.compactMap { $0.first?.identity.name } }
            .sorted { $0.lowercased() < $1.lowercased() }
    }
}
