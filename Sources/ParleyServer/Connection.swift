import Logging
import NIOCore
import ParleyCore
import ParleyWire

/// The per-connection handler of the native protocol: it greets, reads requests, enforces
/// login and time limits, and turns each request into a hub call and a reply.
///
/// Framing is done before it by ``FrameDecoder``; it never sees partial frames.
/// Thread safety: a `ChannelHandler`; used on its channel's event loop only.
final class Connection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let hub: Hub
    private let baseLogger: Logger
    private var address = "?"
    private var session: Session?
    private var loginPending = false
    private var closing = false
    private var pingOutstanding = false
    private var loginTimer: Scheduled<Void>?
    private var channel: (any Channel)!

    init(hub: Hub, logger: Logger) {
        self.hub = hub
        self.baseLogger = logger
    }

    /// A logger with `peer` (and, once logged in, `user`) metadata, built only when something is logged.
    private var logger: Logger {
        var logger = baseLogger
        logger[metadataKey: "peer"] = "\(channel?.remoteAddress.map { "\($0)" } ?? "?")"
        if let session { logger[metadataKey: "user"] = "\(session.identity.name)" }
        return logger
    }

    // MARK: Channel events

    func channelActive(context: ChannelHandlerContext) {
        channel = context.channel
        address = context.channel.remoteAddress?.ipAddress ?? "?"
        let configuration = hub.configuration
        var hello = ServerFrame(type: "hello")
        hello.server = configuration.serverName
        hello.version = ServerFrame.protocolVersion
        hello.registration = configuration.registration
        hello.guests = configuration.guests
        hello.maxFrame = configuration.limits.maxFrameSize
        hello.maxText = configuration.limits.maxMessageLength
        reply(hello)
        let channel = context.channel
        let isLoggedIn = NIOLoopBound(self, eventLoop: context.eventLoop)
        loginTimer = context.eventLoop.scheduleTask(in: .milliseconds(Int64(configuration.loginTimeout * 1000))) {
            if isLoggedIn.value.session == nil {
                Connection.closeWithError(channel, ParleyError(.loginTimeout, "no login within \(Int(configuration.loginTimeout)) seconds"))
            }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        loginTimer?.cancel()
        if let session {
            self.session = nil
            hub.detach(session)
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pingOutstanding = false
        guard !closing else { return }
        let payload = unwrapInboundIn(data)
        switch RequestParser.parse(payload) {
        case .failure(let failure):
            logger.debug("bad request", metadata: ["error": "\(failure.error.debugDescription)"])
            reply(.error(failure.error, id: failure.id))
        case .success(let envelope):
            handle(envelope)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case FrameError.tooLarge(let length, let limit):
            logger.notice("frame too large", metadata: ["length": "\(length)"])
            fatal(ParleyError(.frameTooLarge, "a frame of \(length) bytes is over the limit of \(limit) bytes"))
        case FrameError.emptyFrame:
            fatal(ParleyError(.emptyFrame, "a frame must not be empty (length 0)"))
        default:
            logger.debug("connection error", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .read? = event as? IdleStateHandler.IdleStateEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        if pingOutstanding {
            fatal(ParleyError(.idleTimeout, "no answer to ping"))
        } else {
            pingOutstanding = true
            reply(ServerFrame(type: "ping"))
        }
    }

    // MARK: Requests

    private func handle(_ envelope: RequestEnvelope) {
        let id = envelope.id
        let request = envelope.request
        guard let session else {
            // The command table (`ClientRequest.allowedBeforeLogin`) decides what needs a login.
            guard request.allowedBeforeLogin else {
                reply(.error(Self.notLoggedIn(request), id: id))
                return
            }
            handleBeforeLogin(request, id: id)
            return
        }
        do {
            switch request {
            case .register, .login, .guest:
                throw ParleyError(.alreadyAuthenticated, "you are already logged in as \(session.identity.name)")
            case .ping:
                reply(ServerFrame(type: "pong", id: id))
            case .pong:
                break
            case .say(let room, let text):
                try hub.post(.room(room), text: text, id: id, from: session)
            case .direct(let to, let text):
                try hub.post(.with(to), text: text, id: id, from: session)
            case .history(let target, let before, let limit):
                answer(hub.history(target, before: before, limit: limit, id: id, for: session), id: id)
            case .who:
                var frame = ServerFrame(type: "online", id: id)
                frame.users = hub.onlineNames()
                reply(frame)
            case .groups:
                reply(hub.groupList(mine: false, id: id, for: session))
            case .myGroups:
                reply(hub.groupList(mine: true, id: id, for: session))
            case .groupMembers(let group):
                reply(try hub.groupMembers(group, id: id, for: session))
            case .groupCreate, .groupJoin, .groupLeave, .groupInvite, .groupRemove, .groupMode, .groupTransfer, .groupDelete:
                answer(hub.groupCommand(request, id: id, from: session), id: id)
            case .logout:
                closing = true
                let channel = self.channel!
                channel.writeAndFlush(ServerFrame.ok(id: id).frame(allocator: channel.allocator)).whenComplete { _ in
                    channel.close(promise: nil)
                }
            }
        } catch {
            reply(.error(ParleyError.wrap(error), id: id))
        }
    }

    private func handleBeforeLogin(_ request: ClientRequest, id: RequestID?) {
        let channel = self.channel!
        switch request {
        case .ping:
            reply(ServerFrame(type: "pong", id: id))
        case .pong:
            break
        case .register(let username, let password):
            answer(hub.register(name: username, password: password, id: id, on: channel.eventLoop), id: id)
        case .login(let username, let password, let since):
            guard !loginPending else {
                reply(.error(ParleyError(.badRequest, "a login is already in progress"), id: id))
                return
            }
            loginPending = true
            let this = NIOLoopBound(self, eventLoop: channel.eventLoop)
            hub.login(name: username, password: password, since: since, address: address, channel: channel).whenComplete { result in
                let this = this.value
                this.loginPending = false
                switch result {
                case .success(let attached): this.loggedIn(attached, id: id)
                case .failure(let error): this.reply(.error(ParleyError.wrap(error), id: id))
                }
            }
        case .guest(let name):
            guard !loginPending else {
                reply(.error(ParleyError(.badRequest, "a login is already in progress"), id: id))
                return
            }
            do {
                loggedIn(try hub.guest(wanted: name, channel: channel), id: id)
            } catch {
                reply(.error(error, id: id))
            }
        default:
            // Unreachable: `handle` lets only `allowedBeforeLogin` requests through.
            reply(.error(Self.notLoggedIn(request), id: id))
        }
    }

    private func loggedIn(_ attached: Hub.Attached, id: RequestID?) {
        let session = attached.session
        guard channel.isActive else {
            // The connection closed while the password was being checked.
            hub.detach(session)
            return
        }
        self.session = session
        loginTimer?.cancel()
        var welcome = ServerFrame(type: "welcome", id: id)
        welcome.result = "LOGIN_SUCCESS"
        welcome.username = session.identity.name
        welcome.guest = session.identity.guest
        channel.writeAndFlush(welcome.frame(allocator: channel.allocator), promise: nil)
        hub.replay(attached)
    }

    static func notLoggedIn(_ request: ClientRequest) -> ParleyError {
        ParleyError(.notAuthenticated, "log in first ('\(request.type)' needs a logged-in user)")
    }

    /// Replies with the future's frame, or with its error.
    private func answer(_ future: EventLoopFuture<ServerFrame>, id: RequestID?) {
        let this = NIOLoopBound(self, eventLoop: channel.eventLoop)
        future.whenComplete { result in
            switch result {
            case .success(let frame): this.value.reply(frame)
            case .failure(let error): this.value.reply(.error(ParleyError.wrap(error), id: id))
            }
        }
    }

    /// Writes one frame to this connection, within the outbox bound.
    private func reply(_ frame: ServerFrame) {
        if let session {
            session.send(frame)
            return
        }
        guard let channel, !closing else { return }
        guard channel.isWritable else {
            fatal(ParleyError(.slowConsumer, "you were not reading your replies"))
            return
        }
        channel.writeAndFlush(frame.frame(allocator: channel.allocator), promise: nil)
    }

    /// Tells the peer why, then closes.
    private func fatal(_ error: ParleyError) {
        guard !closing, let channel else { return }
        closing = true
        Connection.closeWithError(channel, error)
    }

    /// Writes an error frame and closes the connection once it is written (or after 2 s).
    static func closeWithError(_ channel: any Channel, _ error: ParleyError) {
        let frame = ServerFrame.error(error).frame(allocator: channel.allocator)
        let timer = channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        channel.writeAndFlush(frame).whenComplete { _ in
            timer.cancel()
            channel.close(promise: nil)
        }
    }
}

extension ParleyError {
    /// `error` if it is a ``ParleyError``, else an internal error that hides the details.
    static func wrap(_ error: any Error) -> ParleyError {
        if let error = error as? ParleyError { return error }
        return ParleyError(.internalError, "the server could not do that", details: "\(error)")
    }
}
