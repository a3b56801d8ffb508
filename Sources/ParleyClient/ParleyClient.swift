import NIOCore
import NIOPosix
import NIOSSL
import ParleyCore
import ParleyWire
import Synchronization

/// An async client for Parley's native protocol: connect, send requests and await their replies,
/// and await events (everything the server sends that is not a reply).
///
/// Used by `parley chat`, `parley bench` and the tests.
/// Thread safety: `Sendable`; every method may be called from any task. Incoming frames are
/// queued in a lock-protected inbox until someone awaits them.
public final class ParleyClient: Sendable {
    /// Why a wait ended without a frame.
    public enum ClientError: Error, Sendable, Hashable, CustomStringConvertible {
        case timedOut(String)
        case closed
        /// Negative integer ids are the client's own (see ``request(_:timeout:)``).
        case reservedID(RequestID)
        /// The server's TLS certificate did not verify (another authority, expired, another
        /// name); the connection was not used. The text says why.
        case untrustedCertificate(String)
        /// TLS could not be set up or the handshake failed for another reason (the port speaks
        /// plain TCP, the CA file is unreadable, no version in common).
        case tlsFailed(String)
        public var description: String {
            switch self {
            case .timedOut(let what): "timed out waiting for \(what)"
            case .closed: "the connection is closed"
            case .reservedID(let id): "request id \(id) is reserved: negative integers are the client's own"
            case .untrustedCertificate(let why): "the server's certificate is not trusted: \(why)"
            case .tlsFailed(let why): "TLS failed: \(why)"
            }
        }
    }

    public let channel: any Channel
    let inbox: Inbox
    /// The server's greeting.
    public let hello: ServerFrame
    /// Ids of awaited requests count down from -1; callers of ``send(_:id:)`` may not use
    /// negative integers, so a reply can never be routed to the wrong request.
    private let nextID = Atomic<Int64>(1)
    private let ownsGroup: (any EventLoopGroup)?
    /// What has been handed out and what the server has been told (`ack`).
    private let acks = Locked(AckState())

    struct AckState {
        var enabled = false
        var taken: Int64 = 0
        var sent: Int64 = 0
        var scheduled = false
    }

    /// How long acknowledgements gather before one is sent (a few per second at most).
    static let ackDelay = TimeAmount.milliseconds(200)

    /// Connects and waits for the server's hello.
    /// - Parameters:
    ///   - rawFrame: optional; sees each frame's payload on the event loop before it is decoded and
    ///     returns true when it has consumed it (the benchmark uses this to skip JSON decoding).
    ///   - group: event loops to use; by default a one-thread group owned by this client.
    ///   - source: the local IP address to connect from (default: the system's choice).
    ///   - webSocket: speak over a WebSocket (`port` is then `parley serve`'s HTTP port, and the
    ///     protocol runs at `/ws`) instead of native TCP framing.
    ///   - tls: speak TLS (to a native port with a certificate, or HTTPS/WSS with `webSocket`),
    ///     verifying the server's certificate against the system's roots or `tls.caFile`, for the
    ///     name `tls.serverName` or `host`; nil for plain TCP.
    /// - Throws: when the connection fails or no hello arrives within `timeout` seconds; the
    ///   server's ``ParleyError`` when it refuses the connection (`TOO_MANY_CONNECTIONS`);
    ///   ``ClientError/untrustedCertificate(_:)`` when the certificate does not verify,
    ///   ``ClientError/tlsFailed(_:)`` when TLS fails otherwise (a plain port, say).
    public static func connect(
        host: String, port: Int, timeout: Double = 10, group: (any EventLoopGroup)? = nil,
        receiveBuffer: Int? = nil, from source: String? = nil, webSocket: Bool = false, tls: ClientTLS? = nil,
        rawFrame: (@Sendable (ByteBuffer) -> Bool)? = nil
    ) async throws -> ParleyClient {
        // Made before connecting: it reads the CA file or the system's bundle (blocking, once).
        let tlsContext = try tls?.makeContext()
        let serverName = tls?.hostname(connectingTo: host)
        let owned: (any EventLoopGroup)? = group == nil ? MultiThreadedEventLoopGroup(numberOfThreads: 1) : nil
        let loops = group ?? owned!
        let inbox = Inbox()
        var bootstrap = ClientBootstrap(group: loops)
            .connectTimeout(.milliseconds(Int64(timeout * 1000)))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        if let source {
            bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0))
        }
        if let receiveBuffer {
            bootstrap = bootstrap.channelOption(ChannelOptions.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBuffer))
        }
        bootstrap = bootstrap.channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                // TLS first, next to the socket; what is written before the handshake ends (the
                // WebSocket upgrade) waits in it.
                if let tlsContext {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: serverName))
                }
                if webSocket { try channel.pipeline.syncOperations.addHandler(WebSocketFraming(host: "\(host):\(port)")) }
                try channel.pipeline.syncOperations.addHandler(
                    ClientHandler(inbox: inbox, maxFrameSize: 16 * 1024 * 1024, framed: !webSocket, rawFrame: rawFrame))
            }
        }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            try? await owned?.shutdownGracefully()
            throw error
        }
        do {
            // A TLS port says nothing until a client starts the handshake: a plain client there
            // waits for a hello that never comes.
            let what = tls != nil || webSocket ? "hello" : "hello (if the port speaks TLS, connect with TLS)"
            let hello = try await inbox.next(on: channel.eventLoop, timeout: timeout, what: what) { $0.type == "hello" || $0.type == "error" }
            // A server over its connection limits answers with an error instead of a hello.
            if let refusal = hello.parleyError { throw refusal }
            return ParleyClient(channel: channel, inbox: inbox, hello: hello, ownsGroup: owned,
                                address: Address(host: host, port: port, group: group, source: source, webSocket: webSocket, tls: tls))
        } catch {
            try? await channel.close()
            try? await owned?.shutdownGracefully()
            // A failed handshake closes the connection: say why rather than "closed". (Not in
            // place of what the server said: a refusal is its own error.)
            if let tls, error is ClientError, let failure = inbox.failure,
               let reason = tls.clientError(for: failure, expected: tls.serverName ?? host) {
                throw reason
            }
            throw error
        }
    }

    init(channel: any Channel, inbox: Inbox, hello: ServerFrame, ownsGroup: (any EventLoopGroup)?, address: Address) {
        self.channel = channel
        self.inbox = inbox
        self.hello = hello
        self.ownsGroup = ownsGroup
        self.address = address
    }

    /// Where and how this client connected, for ``reconnect(timeout:)``.
    struct Address: Sendable {
        var host: String
        var port: Int
        var group: (any EventLoopGroup)?
        var source: String?
        var webSocket: Bool
        var tls: ClientTLS?
    }
    let address: Address

    /// How this client logged in, for ``reconnect(timeout:)``.
    struct Login: Sendable {
        var username: String
        var credential: Credential
        var ack: Bool
    }
    let lastLogin = Locked<Login?>(nil)

    /// The newest message id this client has handed out (what a reconnect resumes after).
    public var newestTaken: Int64 { acks.withLock { $0.taken } }

    /// Connects again to the same server and logs in the same way, with `since` set to the newest
    /// message this client handed out: the new client's replay holds exactly what was missed
    /// meanwhile, nothing twice. Use it after the connection dropped or the server restarted.
    /// - Returns: the new client (this one stays closed).
    /// - Throws: what ``connect(host:port:timeout:group:receiveBuffer:from:rawFrame:)`` and the login throw;
    ///   ``ClientError/closed`` if this client never logged in.
    public func reconnect(timeout: Double = 10) async throws -> ParleyClient {
        guard let login = lastLogin.withLock({ $0 }) else { throw ClientError.closed }
        try? await channel.close()
        try? await ownsGroup?.shutdownGracefully()
        let client = try await ParleyClient.connect(host: address.host, port: address.port, timeout: timeout, group: address.group, from: address.source,
                                                    webSocket: address.webSocket, tls: address.tls)
        // Nothing taken yet: the server's stored read position is the better start.
        let since: Int64? = newestTaken > 0 ? newestTaken : nil
        if let since { client.acknowledge(since) }
        do {
            switch login.credential {
            case .password(let password):
                try await client.login(login.username, password: password, since: since, ack: login.ack, timeout: timeout)
            case .token(let token):
                try await client.login(login.username, token: token, since: since, ack: login.ack, timeout: timeout)
            }
        } catch {
            await client.close()
            throw error
        }
        return client
    }

    // MARK: Sending

    /// Writes a request without waiting for anything; its reply (carrying `id`) arrives as an event frame.
    /// - Throws: ``ClientError/reservedID(_:)`` for a negative integer id.
    public func send(_ request: ClientRequest, id: RequestID? = nil) throws {
        if case .int(let value)? = id, value < 0 { throw ClientError.reservedID(id!) }
        write(RequestEnvelope(id: id, request))
    }

    /// Writes raw bytes (tests use this to send malformed input).
    public func sendRaw(_ bytes: [UInt8]) {
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        channel.writeAndFlush(buffer, promise: nil)
    }

    func write(_ envelope: RequestEnvelope) {
        let json = (try? JSONEncoderBox.encoder.encode(envelope)).map(Array.init) ?? []
        channel.writeAndFlush(Frame.make(json, allocator: channel.allocator), promise: nil)
    }

    /// Sends a request and waits for the reply that echoes its id.
    /// - Throws: ``ParleyError`` when the server answers with an error; ``ClientError`` on timeout or close.
    @discardableResult
    public func request(_ request: ClientRequest, timeout: Double = 10) async throws -> ServerFrame {
        let id = RequestID.int(-nextID.add(1, ordering: .relaxed).oldValue)
        let reply = try await inbox.reply(to: id, on: channel.eventLoop, timeout: timeout) {
            self.write(RequestEnvelope(id: id, request))
        }
        if let error = reply.parleyError { throw error }
        if reply.type == "message", let id = reply.messageId { acknowledge(id) }
        return reply
    }

    // MARK: Events

    /// The next event matching `predicate`; earlier events that do not match stay queued for later
    /// calls. Cancelling the task ends the wait with `CancellationError`.
    /// - Throws: ``ClientError/timedOut(_:)`` after `timeout` seconds, ``ClientError/closed``.
    public func next(timeout: Double = 10, _ what: String = "an event", where predicate: @escaping @Sendable (ClientEvent) -> Bool = { _ in true }) async throws -> ClientEvent {
        ClientEvent(try await nextFrame(timeout: timeout, what) { predicate(ClientEvent($0)) })
    }

    /// The same as ``next(timeout:_:where:)`` on raw frames (including replies to ``send(_:id:)``).
    public func nextFrame(timeout: Double = 10, _ what: String = "a frame", where predicate: @escaping @Sendable (ServerFrame) -> Bool = { _ in true }) async throws -> ServerFrame {
        let frame = try await inbox.next(on: channel.eventLoop, timeout: timeout, what: what, predicate)
        if frame.type == "message", let id = frame.messageId { acknowledge(id) }
        return frame
    }

    /// Every event, in order, as a stream that ends when the connection closes. Events already
    /// queued come first; while the stream is in use, ``next(timeout:_:where:)`` only sees
    /// events it was already waiting for.
    public func events() -> AsyncStream<ClientEvent> {
        let frames = inbox.makeStream()
        return AsyncStream { continuation in
            let task = Task {
                for await frame in frames {
                    if frame.type == "message", let id = frame.messageId { self.acknowledge(id) }
                    continuation.yield(ClientEvent(frame))
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Events received and not yet taken.
    public var pendingEvents: [ClientEvent] { inbox.state.withLock { $0.buffered.map(ClientEvent.init) } }

    /// Drops queued events.
    public func clearEvents() { inbox.state.withLock { $0.buffered.removeAll() } }

    /// The frames received and not yet taken by ``next(timeout:_:where:)`` and its kin.
    public func bufferedFrames() -> [ServerFrame] { inbox.state.withLock { $0.buffered } }

    /// Whether the connection is still open.
    public var isActive: Bool { channel.isActive }

    /// Whether the connection speaks TLS.
    public var usesTLS: Bool { address.tls != nil }

    /// The certificate the server presented; nil on a plain connection.
    /// - Throws: when the connection has closed.
    public func serverCertificate() async throws -> ServerCertificate? {
        guard usesTLS else { return nil }
        return try await channel.nioSSL_peerCertificate().get().map(ServerCertificate.init)
    }

    /// Resolves when the server closes the connection.
    public func waitForClose(timeout: Double = 10) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.channel.closeFuture.get() }
            group.addTask {
                try await Task.sleep(for: .milliseconds(Int(timeout * 1000)))
                throw ClientError.timedOut("the connection to close")
            }
            try await group.next()
            group.cancelAll()
        }
    }

    func enableAcknowledgements(_ on: Bool) {
        acks.withLock { $0.enabled = on }
    }

    /// Notes that the message `id` was handed to the user; the server is told within ``ackDelay``.
    /// Called by every way of taking a message (``next(timeout:_:where:)``, ``events()``, a
    /// send's acknowledgement); a client that shows messages some other way calls it itself.
    public func acknowledge(_ id: Int64) {
        let schedule = acks.withLock { a -> Bool in
            if id > a.taken { a.taken = id }
            guard a.enabled, !a.scheduled, a.taken > a.sent else { return false }
            a.scheduled = true
            return true
        }
        if schedule {
            channel.eventLoop.scheduleTask(in: Self.ackDelay) { self.sendAcknowledgement() }
        }
    }

    /// Sends what was taken since the last acknowledgement; returns the write's future.
    @discardableResult
    func sendAcknowledgement() -> EventLoopFuture<Void>? {
        let through = acks.withLock { a -> Int64? in
            a.scheduled = false
            guard a.enabled, a.taken > a.sent else { return nil }
            a.sent = a.taken
            return a.taken
        }
        guard let through else { return nil }
        let json = (try? JSONEncoderBox.encoder.encode(RequestEnvelope(.ack(through: through)))).map(Array.init) ?? []
        return channel.writeAndFlush(Frame.make(json, allocator: channel.allocator))
    }

    /// Closes the connection (and the client's own event loop, if it made one), first telling
    /// the server what was taken.
    public func close() async {
        if let written = sendAcknowledgement() { try? await written.get() }
        try? await channel.close()
        try? await ownsGroup?.shutdownGracefully()
    }
}

enum JSONEncoderBox {
    static let encoder = JSONEncoder()
}

import Foundation
