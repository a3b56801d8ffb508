import Logging
import NIOCore
import ParleyCore
import ParleyWire
import Synchronization

/// Where a connection's bytes go: a ``SessionSink`` that also carries the connection's own
/// replies before login and can pause reading for the connection's own reasons.
/// Thread safety: as ``SessionSink``.
protocol ConnectionSink: SessionSink {
    /// The connection's channel (its loop, allocator, state and address).
    var channel: any Channel { get }
    /// The connection's own reason to pause reading (requests awaiting answers).
    func setReadingForRequests(_ reading: Bool)
    /// Native frames (as `ServerFrame.frame` makes them) in this sink's ``SessionSink/format``.
    func wire(_ native: ByteBuffer) -> ByteBuffer
    /// Whether requests already received must wait: the client is not reading what it is sent,
    /// or too many of its requests await answers. Reading is paused meanwhile too, but a read
    /// may have brought many requests at once.
    var holdsRequests: Bool { get }
    /// Called (on the loop) when ``holdsRequests`` turns false. Set once, at start.
    func onRelease(_ body: @escaping () -> Void)
    /// The error the server closed the connection with (``SessionSink/close(with:)``), if it did.
    var closeError: ParleyError? { get }
}

/// One client connection speaking the native protocol's requests, whatever carries them (length-
/// prefixed frames over TCP, or WebSocket text messages): it turns requests into calls of the
/// ``ConnectionStateMachine`` and the hub, and performs what they decide, writing every reply
/// through its ``ConnectionSink``.
///
/// The transport frames: this class sees whole requests (one JSON document each), never bytes
/// of a partial frame.
/// Thread safety: used on its channel's event loop only.
final class Connection {
    let hub: Hub
    /// This connection's number in the logs (`connection=`).
    private let id = Connection.nextID.add(1, ordering: .relaxed).oldValue
    private let baseLogger: Logger
    private var machine: ConnectionStateMachine
    private var address = "?"
    private var session: Session?
    /// The login token this session used or was given; `logout` forgets it.
    private var tokenHash: String?
    private var sink: (any ConnectionSink)!
    private var loginTimer: Scheduled<Void>?
    private var channel: (any Channel)!
    /// Requests received while the sink holds requests (see ``ConnectionSink/holdsRequests``),
    /// in order: a client that does not read its replies gets no more answers queued for it,
    /// whatever it sent in one read.
    /// (Made on first use: an idle connection keeps no buffer for it.)
    private var held: CircularBuffer<ByteBuffer>?
    /// A history read is under way: later requests wait for it. So one connection occupies at
    /// most one reader thread however many reads it pipelines, and has at most one history page
    /// (at most a frame) in flight: a client that never reads cannot have many.
    private var historyInFlight = false
    /// The client asked to log out (the reason its connection closed).
    private var loggedOut = false
    private var mustHold: Bool { historyInFlight || sink.holdsRequests }

    init(hub: Hub, logger: Logger) {
        self.hub = hub
        self.baseLogger = logger
        self.machine = ConnectionStateMachine(loginTimeout: hub.configuration.loginTimeout, maxPending: hub.configuration.maxPendingRequests)
    }

    /// A logger with `connection` and `address` (and, once logged in, `user`) metadata, built
    /// only when something is logged.
    private var logger: Logger {
        var logger = baseLogger
        logger[metadataKey: "connection"] = "\(id)"
        logger[metadataKey: "address"] = "\(address)"
        if let session { logger[metadataKey: "user"] = "\(session.identity.name)" }
        return logger
    }

    // MARK: Transport events

    /// The connection is open: greets the client.
    /// - Parameter address: the client's IP address (the login throttle keys on it).
    func start(sink: any ConnectionSink, address: String) {
        self.sink = sink
        self.channel = sink.channel
        self.address = address
        sink.onRelease { [weak self] in self?.release() }
        logger.info("connected", metadata: ["transport": "\(Self.transport(of: sink))"])
        perform(machine.connected(), id: nil)
    }

    /// The connection has closed.
    func closed() {
        held = nil
        loginTimer?.cancel()
        if let sink {
            hub.metrics.connectionClosed(with: sink.closeError)
            logger.info("disconnected", metadata: [
                "transport": "\(Self.transport(of: sink))",
                "reason": "\(Self.closeReason(sink.closeError, loggedOut: loggedOut, shuttingDown: hub.isShuttingDown))",
            ])
        }
        perform(machine.closed(), id: nil)
    }

    /// One whole request (the JSON document, without framing).
    func received(_ request: ByteBuffer) {
        if held != nil || mustHold {
            held = held ?? CircularBuffer(initialCapacity: 16)
            held!.append(request)
            return
        }
        handle(request)
    }

    /// The sink no longer holds requests: handles those held, in order, until it holds them again.
    private func release() {
        while let first = held?.first, !mustHold, machine.state != .closing, machine.state != .closed {
            held!.removeFirst()
            if held!.isEmpty { held = nil }
            handle(first)
        }
    }

    private func handle(_ request: ByteBuffer) {
        switch RequestParser.parse(request) {
        case .failure(let failure):
            logger.debug("bad request", metadata: ["error": "\(failure.error.debugDescription)"])
            perform(machine.malformed(failure.error), id: failure.id)
        case .success(let envelope):
            perform(machine.received(Self.kind(of: envelope.request)), id: envelope.id, request: envelope.request)
        }
    }

    /// The transport could not frame what the client sent (too large, empty, too slow).
    func framingFailed(_ error: ParleyError) {
        perform(machine.framingFailed(error), id: nil)
    }

    /// The transport received something that is not a request (a binary WebSocket message):
    /// answers `error`, and the connection stays open.
    func rejected(_ error: ParleyError) {
        guard machine.state != .closing, machine.state != .closed else { return }
        reply(.error(error, id: nil))
    }

    /// Nothing was read for the idle timeout.
    func idle() {
        perform(machine.idle(), id: nil)
    }

    static func kind(of request: ClientRequest) -> ConnectionStateMachine.Request {
        switch request {
        case .register: .register
        case .login: .login
        case .guest: .guest
        case .ping: .ping
        case .pong: .pong
        case .logout: .logout
        case .revoke: .revoke
        default: .other(type: request.type)
        }
    }

    // MARK: Actions

    private func perform(_ action: ConnectionStateMachine.Action, id: RequestID?, request: ClientRequest? = nil) {
        switch action {
        case .none:
            break
        case .greet:
            let configuration = hub.configuration
            var hello = ServerFrame(type: "hello")
            hello.server = configuration.serverName
            hello.version = ServerFrame.protocolVersion
            hello.registration = configuration.registration
            hello.guests = configuration.guests
            hello.maxFrame = configuration.limits.maxFrameSize
            hello.maxText = configuration.limits.maxMessageLength
            hello.maxTextBytes = configuration.limits.maxTextBytes
            hello.presenceLimit = configuration.presenceThreshold
            reply(hello)
            let this = NIOLoopBound(self, eventLoop: channel.eventLoop)
            loginTimer = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(configuration.loginTimeout * 1000))) {
                let this = this.value
                this.perform(this.machine.loginTimerFired(), id: nil)
            }
        case .pong:
            reply(ServerFrame(type: "pong", id: id))
        case .refuse(let error):
            reply(.error(error, id: id))
        case .close(let error):
            sink.close(with: error)
        case .ping:
            reply(ServerFrame(type: "ping"))
        case .register:
            guard case .register(let username, let password)? = request else { return }
            let channel = self.channel!
            let registering = hub.register(name: username, password: password, on: channel.eventLoop, unless: { !channel.isActive })
            let this = NIOLoopBound(self, eventLoop: channel.eventLoop)
            registering.whenFailure { error in this.value.registrationFailed(ParleyError.wrap(error), name: username) }
            answer(registering, id: id) { name in
                var frame = ServerFrame(type: "registered", id: id)
                frame.result = "REGISTER_SUCCESS"
                frame.username = name
                return frame
            }
        case .authenticate:
            guard case .login(let username, let credential, let since, let remember, let ack)? = request else { return }
            let this = NIOLoopBound(self, eventLoop: channel.eventLoop)
            perform(machine.requestStarted(), id: nil)
            let channel = self.channel!
            hub.login(name: username, credential: credential, since: since, remember: remember, acknowledges: ack, address: address,
                      sink: sink, unless: { !channel.isActive }).whenComplete { result in
                let this = this.value
                this.perform(this.machine.requestFinished(), id: nil)
                let method: ServerMetrics.LoginMethod = if case .token = credential { .token } else { .password }
                switch result {
                case .success(let attached):
                    this.hub.metrics.login(method, .success)
                    this.perform(this.machine.loginSucceeded(), id: id, attached: attached)
                case .failure(let error):
                    let error = ParleyError.wrap(error)
                    this.loginFailed(error, method: method, name: username)
                    this.perform(this.machine.loginFailed(error), id: id)
                }
            }
        case .attachGuest:
            guard case .guest(let name)? = request else { return }
            do {
                let attached = try hub.guest(wanted: name, sink: sink, address: address)
                hub.metrics.login(.guest, .success)
                perform(machine.loginSucceeded(), id: id, attached: attached)
            } catch {
                loginFailed(error, method: .guest, name: name)
                reply(.error(error, id: id))
            }
        case .startSession, .detachLateSession:
            // Reached only through the overload below, which carries the new session.
            break
        case .perform:
            guard let request, let session else { return }
            handle(request, id: id, session: session)
        case .revoke:
            guard case .revoke(let token)? = request else { return }
            hub.forgetToken(hash: LoginToken.hash(token))
            reply(.ok(id: id))
        case .logout:
            loggedOut = true
            if let tokenHash { hub.forgetToken(hash: tokenHash) }
            let channel = self.channel!
            let sink = self.sink!
            // Everywhere: `ok` once every token is gone (no token login can follow it).
            let done = if case .logout(everywhere: true)? = request, let session {
                hub.logoutEverywhere(session)
            } else {
                channel.eventLoop.makeSucceededVoidFuture()
            }
            done.whenComplete { _ in
                let written = channel.eventLoop.makePromise(of: Void.self)
                sink.write(sink.wire(ServerFrame.ok(id: id).frame(allocator: channel.allocator)), flush: true, written: written)
                written.futureResult.whenComplete { _ in channel.close(promise: nil) }
            }
        case .pauseReading:
            sink.setReadingForRequests(false)
        case .resumeReading:
            sink.setReadingForRequests(true)
        case .detach:
            if let session {
                self.session = nil
                hub.detach(session)
            }
        }
    }

    /// Performs the outcome of a login, which carries the session it attached.
    private func perform(_ action: ConnectionStateMachine.Action, id: RequestID?, attached: Hub.Attached) {
        switch action {
        case .startSession where channel.isActive:
            session = attached.session
            tokenHash = attached.tokenHash
            loginTimer?.cancel()
            var welcome = ServerFrame(type: "welcome", id: id)
            welcome.result = "LOGIN_SUCCESS"
            welcome.username = attached.session.identity.name
            welcome.guest = attached.session.identity.isGuest
            welcome.token = attached.issuedToken
            // The welcome message follows the welcome, before the replay.
            let motd = hub.motd
            sink.write(sink.wire(welcome.frame(allocator: channel.allocator)), flush: motd.isEmpty, written: nil)
            if !motd.isEmpty {
                sink.write(sink.wire(ServerFrame(event: .motd(text: motd)).frame(allocator: channel.allocator)), flush: true, written: nil)
            }
            hub.replay(attached)
        case .startSession, .detachLateSession:
            // The connection closed while the password was being checked.
            hub.detach(attached.session)
        default:
            perform(action, id: id)
        }
    }

    /// A request of a logged-in user: call the hub, answer with its result.
    private func handle(_ request: ClientRequest, id: RequestID?, session: Session) {
        session.touch()
        do {
            switch request {
            case .send(let target, let text):
                try hub.send(target, text: text, id: id, from: session)
            case .history(let target, let before, let limit):
                let read = hub.history(target, before: before, limit: limit, for: session)
                historyInFlight = true
                answer(read, id: id) { .history($0, id: id) }
                // After the answer is written: the requests that waited for it go on.
                let this = NIOLoopBound(self, eventLoop: channel.eventLoop)
                read.whenComplete { _ in
                    this.value.historyInFlight = false
                    this.value.release()
                }
            case .who(let after, let limit):
                reply(.online(try hub.who(after: after, limit: limit), id: id))
            case .follow(let users):
                var frame = ServerFrame(type: "presence", id: id)
                frame.changes = try hub.follow(users, for: session)
                reply(frame)
            case .ack(let through):
                session.acknowledge(through: through)
            case .unfollow(let users):
                hub.unfollow(users, for: session)
                reply(.ok(id: id))
            case .groups(let after):
                reply(.groups(hub.groupList(mine: false, after: after, for: session), id: id))
            case .myGroups(let after):
                reply(.groups(hub.groupList(mine: true, after: after, for: session), id: id))
            case .groupMembers(let group, let after):
                reply(.members(try hub.groupMembers(group, after: after, for: session), id: id))
            case .sessions:
                var frame = ServerFrame(type: "sessions", id: id)
                frame.sessions = hub.ownSessions(of: session)
                reply(frame)
            case .endSession(let target):
                try hub.endSession(target, for: session)
                reply(.ok(id: id))
            case .changePassword(let current, let password):
                answer(hub.changePassword(current: current, new: password, address: address, for: session), id: id) { _ in .ok(id: id) }
            default:
                guard let command = request.groupCommand else {
                    reply(.error(ParleyError(.badRequest, "'\(request.type)' cannot be used here"), id: id))
                    return
                }
                answer(hub.groupCommand(command, from: session), id: id) { group in
                    var reply = ServerFrame.ok(id: id)
                    reply.group = group
                    return reply
                }
            }
        } catch {
            reply(.error(ParleyError.wrap(error), id: id))
        }
    }

    /// Replies with the future's value as a frame, or with its error.
    private func answer<T>(_ future: EventLoopFuture<T>, id: RequestID?, _ frame: @escaping @Sendable (T) -> ServerFrame) {
        let this = NIOLoopBound(self, eventLoop: channel.eventLoop)
        perform(machine.requestStarted(), id: nil)
        future.whenComplete { result in
            let connection = this.value
            connection.perform(connection.machine.requestFinished(), id: nil)
            switch result {
            case .success(let value): this.value.reply(frame(value))
            case .failure(let error): this.value.reply(.error(ParleyError.wrap(error), id: id))
            }
        }
    }

    /// Writes one frame to this connection, within the outbox bound.
    private func reply(_ frame: ServerFrame) {
        if frame.type == "error", let code = frame.code { hub.metrics.error(ParleyError.Code(code)) }
        let maxFrame = hub.configuration.limits.maxFrameSize
        if let session {
            session.sendEncoded(sink.wire(frame.frame(within: maxFrame, allocator: channel.allocator)))
            return
        }
        guard let channel, machine.state != .closing, machine.state != .closed else { return }
        guard sink.isWritable else {
            machine.closing()
            sink.close(with: ParleyError(.slowConsumer, "you were not reading your replies"))
            return
        }
        sink.write(sink.wire(frame.frame(within: maxFrame, allocator: channel.allocator)), flush: true, written: nil)
    }
}

extension Connection {
    /// Connections opened since the start, for their numbers in the logs.
    static let nextID = Atomic<Int>(1)

    /// A login that failed: counted by outcome and logged with its reason (the name only once
    /// it is known to be a valid one; never the password or token).
    private func loginFailed(_ error: ParleyError, method: ServerMetrics.LoginMethod, name: String) {
        hub.metrics.login(method, ServerMetrics.LoginOutcome(error))
        var metadata: Logger.Metadata = ["reason": "\(error.code)", "method": "\(method.label)"]
        if Self.isValidName(name) { metadata["user"] = "\(name)" }
        logger.info("login failed", metadata: metadata)
    }

    /// Whether `name` is a valid user name (only such names are logged: nothing else a stranger
    /// sends is kept or logged).
    private static func isValidName(_ name: String) -> Bool {
        (try? Names.validateUsername(name)) != nil
    }

    /// A registration that was refused, logged with its reason (the name only once it is known to
    /// be a valid one; never the password).
    private func registrationFailed(_ error: ParleyError, name: String) {
        var metadata: Logger.Metadata = ["reason": "\(error.code)"]
        if Self.isValidName(name) { metadata["user"] = "\(name)" }
        logger.info("registration refused", metadata: metadata)
    }
}

extension ParleyError {
    /// `error` if it is a ``ParleyError``, else an internal error that hides the details.
    static func wrap(_ error: any Error) -> ParleyError {
        if let error = error as? ParleyError { return error }
        return ParleyError(.internalError, "the server could not do that", details: "\(error)")
    }
}
