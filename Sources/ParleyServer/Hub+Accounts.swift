import Foundation
import HummingbirdBcrypt
import NIOCore
import ParleyCore
import ParleyStore

extension Hub {
    /// What a login hands back: the new session and what to replay to it.
    struct Attached {
        var session: Session
        var rooms: [Room]
        /// Replay what came after this message id...
        var readPosition: Int64
        /// ...up to this one (what was fanned out before the session existed).
        var through: Int64
        /// Who is online, as far as this session is told.
        var presence: [PresenceChange]
        /// The online count, when the server is above the presence threshold.
        var onlineCount: Int?
        /// A login token made for this login (`remember`), to hand to the client.
        var issuedToken: String? = nil
        /// The hash of the token this session logged in with or was given (revoked by `logout`).
        var tokenHash: String? = nil
    }

    /// Registers an account. Hashing runs on the password pool (``PasswordChecks``: `SERVER_BUSY`
    /// when it is full; dropped if `gone()` by its turn); the future completes on `loop` with the
    /// name as registered.
    func register(name: String, password: String, on loop: any EventLoop, unless gone: @escaping @Sendable () -> Bool = { false })
        -> EventLoopFuture<String> {
        do {
            guard configuration.registration else {
                throw ParleyError(.registrationClosed, "this server does not accept new registrations")
            }
            try Names.validateUsername(name)
            try limits.validatePassword(password)
            try state.withLock { s throws(ParleyError) in
                if s.shuttingDown { throw ParleyError(.shuttingDown, "the server is shutting down") }
                if s.isTaken(Names.key(name)) { throw ParleyError(.usernameExists, "the username '\(name)' is taken") }
                // Reserved until the registration ends, so no guest (or second registration)
                // can take the name while its password is being hashed.
                s.reserved.insert(Names.key(name))
            }
        } catch {
            return loop.makeFailedFuture(error)
        }
        let cost = configuration.bcryptCost
        let storage = self.storage
        let key = Names.key(name)
        return passwords.run(on: loop, unless: gone) {
            let hash = Bcrypt.hash(password, cost: cost)
            return try storage.createAccount(name: name, passwordHash: hash, now: .now)
        }.always { result in
            self.state.withLock { s in
                if case .success(true) = result { s.accounts[key] = name }
                s.reserved.remove(key)
            }
        }.flatMapThrowing { created in
            guard created else { throw ParleyError(.usernameExists, "the username '\(name)' is taken") }
            self.logger.info("registered", metadata: ["user": "\(name)"])
            return name
        }
    }

    /// Checks a password or a login token (on the thread pool) and attaches a new session writing to `sink`.
    /// - Parameters:
    ///   - since: replay after this message id instead of after the stored read position.
    ///   - remember: with a password, make a login token for later logins.
    func login(name: String, credential: Credential, since: Int64? = nil, remember: Bool = false, acknowledges: Bool = false,
               address: String, sink: any SessionSink, unless gone: @escaping @Sendable () -> Bool = { false }) -> EventLoopFuture<Attached> {
        let loop = sink.eventLoop
        // Nothing a stranger sends is kept (or logged) before it is known to be a valid name.
        do {
            try Names.validateUsername(name)
        } catch {
            return loop.makeFailedFuture(error)
        }
        let key = Names.key(name)
        // Password guesses are throttled per account and per address. A login token (256 bits)
        // gains nothing from a per-account throttle, and must never be refused because of others'
        // wrong passwords: its failures count per address only.
        let throttleKeys: [String]
        if case .password = credential {
            throttleKeys = Self.passwordThrottleKeys(account: key, address: address)
        } else {
            throttleKeys = ["addr:" + Self.throttleAddress(address)]
        }
        let now = Date().timeIntervalSince1970
        if let wait = state.withLock({ $0.shuttingDown ? -1 : $0.throttle.retryAfter(throttleKeys, now: now) }) {
            if wait < 0 { return loop.makeFailedFuture(ParleyError(.shuttingDown, "the server is shutting down")) }
            return loop.makeFailedFuture(Self.rateLimited("too many failed logins", wait: wait))
        }
        let storage = self.storage
        let dummy = dummyHash
        struct Found: Sendable {
            var account: Account
            var partners: [String]
            var token: String?
            var tokenHash: String?
        }
        let check: @Sendable () throws -> Found? = {
            let account: Account?
            var token: String? = nil
            var tokenHash: String? = nil
            switch credential {
            case .password(let password):
                let stored = try storage.account(key)
                account = Bcrypt.verify(password, hash: stored?.passwordHash ?? dummy) ? stored : nil
                if let account, remember {
                    let made = LoginToken.make()
                    tokenHash = LoginToken.hash(made)
                    try storage.saveToken(hash: tokenHash!, user: account.key, now: .now, keep: LoginToken.keepPerUser)
                    token = made
                }
            case .token(let presented):
                let hash = LoginToken.hash(presented)
                let owner = try storage.account(tokenHash: hash, now: .now, maxAge: LoginToken.maxAge)
                account = owner?.key == key ? owner : nil
                if account != nil { tokenHash = hash }
            }
            guard let account else { return nil }
            return Found(account: account, partners: try storage.conversationPartners(of: account.key), token: token, tokenHash: tokenHash)
        }
        let checked: EventLoopFuture<Found?>
        if case .password = credential {
            checked = passwords.run(on: loop, unless: gone, check)
        } else {
            checked = offload(on: loop, check)
        }
        return checked.flatMapThrowing { found in
            let now = Date().timeIntervalSince1970
            guard let found else {
                self.state.withLock { $0.throttle.failed(throttleKeys, now: now) }
                // (Logged, with every other kind of failure, by the connection: "login failed".)
                if case .token = credential {
                    throw ParleyError(.invalidCredentials, "that login token is not valid (any more); log in with your password")
                }
                throw ParleyError(.invalidCredentials, "wrong username or password")
            }
            if case .password = credential { self.state.withLock { $0.throttle.succeeded("user:" + key) } }
            if let ban = self.activeBan(of: found.account.key) {
                self.logger.info("login refused: banned", metadata: ["user": "\(found.account.name)", "address": "\(address)"])
                throw ban.refusal
            }
            var attached = try self.attach(.account(AccountIdentity(name: found.account.name)), sink: sink,
                                           storedPosition: found.account.readPosition, since: since, partners: Set(found.partners),
                                           acknowledges: acknowledges, address: address, tokenHash: found.tokenHash)
            attached.issuedToken = found.token
            attached.tokenHash = found.tokenHash
            return attached
        }
    }

    /// The throttle keys of a password guess: the account and the address.
    static func passwordThrottleKeys(account key: String, address: String) -> [String] {
        ["user:" + key, "addr:" + throttleAddress(address)]
    }

    /// `RATE_LIMITED` for a throttled attempt, with the wait (to a tenth of a second).
    static func rateLimited(_ what: String, wait: Double) -> ParleyError {
        ParleyError(.rateLimited, "\(what); try again in \(Int(wait.rounded(.up))) s", retryAfter: (wait * 10).rounded(.up) / 10)
    }

    /// The part of an address the login throttle keys on: an IPv4 address whole, an IPv6 address
    /// by its /64 (one subscriber's network; any one host has 2^64 addresses).
    static func throttleAddress(_ address: String) -> String {
        guard address.contains(":") else { return address }
        var bytes = [UInt8](repeating: 0, count: 16)
        guard inet_pton(AF_INET6, address, &bytes) == 1 else { return address }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
            return bytes[12...].map(String.init).joined(separator: ".")
        }
        return stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(separator: ":") + "::/64"
    }

    /// Logs in a guest under `wanted`, or under `wanted` with a numeric suffix when it is taken.
    func guest(wanted: String, sink: any SessionSink, address: String = "?") throws(ParleyError) -> Attached {
        guard configuration.guests else {
            throw ParleyError(.guestsDisabled, "this server does not allow guests; register an account")
        }
        try Names.validateUsername(wanted)
        return try attach(nil, wanted: wanted, sink: sink, storedPosition: 0, address: address)
    }

    func attach(_ identity: Identity?, wanted: String = "", sink: any SessionSink, storedPosition: Int64, since: Int64? = nil,
                partners: Set<String> = [], acknowledges: Bool = false, address: String = "?", tokenHash: String? = nil) throws(ParleyError) -> Attached {
        let sessionID = nextSessionID.add(1, ordering: .relaxed).oldValue
        let loopIndex = loopIndex(of: sink.eventLoop)
        var schedulePresence = false
        let commits = self.commits
        let interval = TimeAmount.milliseconds(Int64(configuration.readPositionInterval * 1000))
        let attached = try state.withLock { s throws(ParleyError) -> Attached in
            if s.shuttingDown { throw ParleyError(.shuttingDown, "the server is shutting down") }
            let who = identity ?? .guest(GuestIdentity(name: s.guestNames.name(for: wanted, isTaken: s.isTaken)))
            // The replay starts after what the user has received; so does the session's read position.
            let position = who.isGuest ? 0 : since.map { max($0, 0) } ?? max(storedPosition, s.readPositions[who.key] ?? 0)
            let session = Session(
                id: sessionID, identity: who, sink: sink, encoder: encoders[sink.format.index], loopIndex: loopIndex,
                written: s.fanOutPosition, readPosition: position, acknowledges: acknowledges,
                limits: configuration.limits, maxInflight: configuration.maxInflight, logger: logger,
                positionInterval: interval, storePosition: who.account.map { Self.positionWriter(commits, account: $0) },
                address: address, tokenHash: tokenHash)
            if s.add(session, partners: partners) {
                schedulePresence = s.recordPresence(PresenceChange(username: who.name, online: true), key: who.key)
            }
            let rooms = [Room.general] + s.directory.groups(of: who.key).map(\.room)
            return Attached(session: session, rooms: rooms, readPosition: position, through: s.fanOutPosition,
                            presence: s.presenceSnapshot(for: who.key),
                            onlineCount: s.presence.everyone ? nil : s.presence.onlineCount)
        }
        attached.session.logger.info("logged in", metadata: [
            "guest": "\(attached.session.identity.isGuest)", "address": "\(address)", "transport": "\(attached.session.transport)",
        ])
        if schedulePresence { schedulePresenceFlush(in: Self.presenceWindow) }
        return attached
    }

    /// Messages read and written per page of a login replay.
    static let replayPageSize = 200

    /// Writes what the session missed, marked as replay, before any live message, then who is
    /// online. The replay is read and written a page at a time through the thread pool, each page
    /// only once the one before has been handed to the operating system, so a huge backlog costs
    /// one page of memory and a slow reader slows only its own replay. Live messages arriving
    /// meanwhile are held (within the outbox bound) and follow, with no gap and no duplicate.
    /// Work for a connection that has gone is dropped.
    func replay(_ attached: Attached) {
        let session = attached.session
        let storage = self.storage
        let cap = limits.replayLimit
        let guest = session.identity.isGuest
        let key = session.identity.storageKey
        offload(on: session.loop) {
            try storage.replayPlan(user: key, rooms: attached.rooms, directs: !guest, after: attached.readPosition,
                                   through: attached.through, perRoom: cap)
        }.whenComplete { result in
            switch result {
            case .success(let plan):
                let allocator = ByteBufferAllocator()
                let notices = plan.truncated.map {
                    session.encoder.encode(.replayMore(conversation: $0.conversation, isPrivate: $0.isPrivate, before: $0.before), allocator: allocator)
                }
                if notices.isEmpty {
                    self.replayPages(attached, plan: plan, count: 0)
                } else {
                    session.writeReplayPage(notices, newest: 0).whenSuccess {
                        self.replayPages(attached, plan: plan, count: 0)
                    }
                }
            case .failure(let error):
                self.replayFailed(session, error)
            }
        }
    }

    /// Reads and writes the next page of a replay; at the end, closes it. On the session's loop.
    private func replayPages(_ attached: Attached, plan: ReplayPlan, count: Int) {
        let session = attached.session
        guard !session.isClosing else { return }
        let storage = self.storage
        offload(on: session.loop) { () -> ([StoredMessage], ReplayPlan) in
            var next = plan
            let page = try storage.replayPage(&next, limit: Self.replayPageSize)
            return (page, next)
        }.whenComplete { result in
            let allocator = ByteBufferAllocator()
            switch result {
            case .success((let page, let next)) where !page.isEmpty:
                self.metrics.replayPages.increment()
                let frames = page.map { session.encoder.encode(.replayed($0), allocator: allocator) }
                session.writeReplayPage(frames, newest: page.last!.id).whenSuccess {
                    self.replayPages(attached, plan: next, count: count + page.count)
                }
            case .success:
                var frames = [session.encoder.encode(.replayEnd(count: count), allocator: allocator),
                              session.encoder.encode(.presence(attached.presence, snapshot: true), allocator: allocator)]
                if let online = attached.onlineCount {
                    frames.append(session.encoder.encode(.onlineCount(online, everyone: false), allocator: allocator))
                }
                _ = session.writeReplayPage(frames, newest: 0)
                session.finishReplay(through: attached.through)
            case .failure(let error):
                self.replayFailed(session, error)
            }
        }
    }

    /// A replay that cannot be read: the client is told and disconnected, with its read position
    /// where it was, so the next login replays the same again; nothing is skipped.
    private func replayFailed(_ session: Session, _ error: any Error) {
        guard !session.isClosing else { return }
        session.logger.error("replay failed", metadata: ["error": "\(error)"])
        let reason = (error as? ParleyError)?.code == .shuttingDown
            ? ParleyError(.shuttingDown, "the server is shutting down")
            : ParleyError(.storageFailed, "your missed messages could not be read; log in again")
        session.sink.close(with: reason)
    }

    /// Stores an account's read position through the commit queue (guests have none).
    static func positionWriter(_ commits: CommitQueue, account: AccountIdentity) -> @Sendable (Int64) -> Void {
        { position in commits.enqueue(.readPosition(user: account.key, messageID: position)) }
    }

    /// Forgets a login token (at `logout`), off the event loop.
    func forgetToken(hash: String) {
        let storage = self.storage
        threadPool.submit { _ in try? storage.deleteToken(hash: hash) }
    }

    /// Removes a session whose connection closed; the user goes offline with their last one.
    /// On the session's loop.
    func detach(_ session: Session) {
        session.ended()
        let position = session.readPosition
        let key = session.identity.key
        let schedule = state.withLock { s -> Bool in
            let wasLast = s.remove(session)
            if let account = session.identity.account { s.readPositions[account.key] = max(s.readPositions[account.key] ?? 0, position) }
            guard wasLast else { return false }
            let change = PresenceChange(username: session.identity.name, online: false)
            let schedule = s.recordPresence(change, key: key)
            s.dropUser(key)
            return schedule
        }
        if let account = session.identity.account {
            Self.positionWriter(commits, account: account)(position)
        }
        session.logger.info("session ended")
        if schedule { schedulePresenceFlush(in: Self.presenceWindow) }
    }
}
