import Logging
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import ParleyCore
import ParleyWire

/// A front door: binds one protocol's listening socket on the server's shared event loops and
/// turns each accepted connection into sessions of the hub. The native TCP listener is the
/// first; the HTTP/WebSocket and IRC listeners plug in beside it (``ParleyServer`` starts every
/// listener it was built with and reports each one's port).
/// Thread safety: implementations are `Sendable`; ``bind(hub:group:track:logger:)`` is called once.
protocol Listener: Sendable {
    /// Its name in logs and in ``ParleyServer/port(of:)``: `native`, `native-plain`, `http`, `irc`.
    var name: String { get }
    var host: String { get }
    var port: Int { get }
    /// Whether its connections speak TLS.
    var speaksTLS: Bool { get }
    /// Binds and starts accepting.
    /// - Parameter admit: to call with every accepted channel, so shutdown can reach it; an error
    ///   when the connection is over a limit, to tell the client before closing it.
    func bind(hub: Hub, group: any EventLoopGroup, admit: @escaping @Sendable (any Channel) -> ParleyError?, logger: Logger) async throws -> any Channel
    /// Says goodbye to one of its connections at shutdown (on the channel's loop).
    func farewell(_ channel: any Channel, message: String)
    /// Stops what the listener runs besides its channels (after every connection has closed).
    func stop() async
}

extension Listener {
    func stop() async {}
    var speaksTLS: Bool { false }
}

/// The native protocol's listener: length-prefixed JSON over TCP, or over TLS when it has a
/// certificate (``tls``). With TLS, a second, plain one may listen on loopback
/// (``ServerConfiguration/plainPort``, named ``plainName``).
/// Thread safety: a value type; `Sendable`.
struct NativeListener: Listener {
    /// The name of the plain loopback listener kept beside a TLS one.
    static let plainName = "native-plain"
    let name: String
    let host: String
    let port: Int
    let configuration: ServerConfiguration
    /// The certificate to speak TLS with; nil for plain TCP.
    let tls: TLSContextBox?
    var speaksTLS: Bool { tls != nil }

    init(name: String = "native", host: String, port: Int, configuration: ServerConfiguration, tls: TLSContextBox? = nil) {
        self.name = name
        self.host = host
        self.port = port
        self.configuration = configuration
        self.tls = tls
    }

    func bind(hub: Hub, group: any EventLoopGroup, admit: @escaping @Sendable (any Channel) -> ParleyError?, logger: Logger) async throws -> any Channel {
        let limits = configuration.limits
        let idle = configuration.idleTimeout
        let frameTimeout = configuration.frameTimeout
        let acceptFailures = AcceptFailureLog(logger: logger)
        let tls = self.tls
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelInitializer { channel in
                // Out of file descriptors (or memory), accept fails at once and would be retried
                // at once, forever: wait a moment instead, and say so once.
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptPause(log: acceptFailures))
                }
            }
            .serverChannelOption(ChannelOptions.backlog, value: 4096)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            // Each channel keeps up to maxMessagesPerRead receive buffers for reuse: one small
            // buffer that grows only for busy clients keeps idle connections cheap.
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 1)
            .childChannelOption(ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65536))
            // NIO's own queue stays short; the connection's Outbox holds the rest, coalesced.
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: Outbox.waterMark)
            .childChannelInitializer { channel in
                // TLS first, next to the socket; everything else is appended behind it and sees
                // plaintext. A refused client (over a connection limit) gets its error frame once
                // the handshake is done, so a TLS client can read why; one that never finishes a
                // handshake is closed 2 s after connecting, as a plain one that does not read is.
                let refusal = admit(channel)
                return channel.eventLoop.makeCompletedFuture { () throws -> Void in
                    if let tls { try channel.pipeline.syncOperations.addTLS(tls, logger: logger) }
                    if let refusal {
                        try channel.pipeline.syncOperations.addHandler(Refuse(error: refusal))
                        return
                    }
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: .milliseconds(Int64(idle * 1000))),
                        FrameDeadline(limit: .milliseconds(Int64(frameTimeout * 1000))),
                        ByteToMessageHandler(FrameDecoder(maxFrameSize: limits.maxFrameSize)),
                        NativeConnection(hub: hub, logger: logger),
                    ])
                }
            }
        return try await bootstrap.bind(host: host, port: port).get()
    }

    /// Tells a connection over a limit why, then closes it.
    final class Refuse: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let error: ParleyError
        init(error: ParleyError) { self.error = error }
        func channelActive(context: ChannelHandlerContext) {
            NativeSink.closeWithError(context.channel, error)
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
    }

    /// The notice follows every acknowledgement already written; a client that does not read
    /// them within 10 s is closed anyway.
    func farewell(_ channel: any Channel, message: String) {
        let bytes = NativeEncoder().encode(.shutdown(message: message), allocator: channel.allocator)
        channel.close(once: channel.writeAndFlush(bytes), within: .seconds(10))
    }
}

extension Channel {
    /// Closes the channel once `written` completes (the last words have reached the socket), or
    /// after `grace` at the latest: a client that does not read cannot keep it open.
    func close(once written: EventLoopFuture<Void>, within grace: TimeAmount) {
        let timer = eventLoop.scheduleTask(in: grace) { self.close(promise: nil) }
        written.whenComplete { _ in
            timer.cancel()
            self.close(promise: nil)
        }
    }
}

/// Pauses accepting for a moment when `accept` fails for want of file descriptors or memory.
///
/// NIO's own `AcceptBackoffHandler` cannot help with the classic `ServerBootstrap`: after a failed
/// `accept` the server channel still has a read pending and stays registered for readability,
/// so the event loop calls `accept` again at once, forever (measured: 31,666 failing `accept4`
/// calls in 3 s, one core at 100 %). Turning `autoRead` off unregisters the socket; turning it
/// back on after the pause registers it again.
/// Thread safety: a `ChannelHandler` on the server channel's loop.
final class AcceptPause: ChannelInboundHandler {
    typealias InboundIn = any Channel
    static let pause = TimeAmount.milliseconds(250)
    let log: AcceptFailureLog
    private var paused = false

    init(log: AcceptFailureLog) { self.log = log }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        log.failed(error)
        guard !paused else { return }
        paused = true
        let channel = context.channel
        let this = NIOLoopBound(self, eventLoop: context.eventLoop)
        channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in
            channel.eventLoop.scheduleTask(in: Self.pause) {
                this.value.paused = false
                channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
            }
        }
    }
}

/// Logs a failing `accept` (out of file descriptors or memory) once, and again at most once a
/// minute while it goes on, with how many failures there were meanwhile.
/// Thread safety: `Sendable`; the count is behind a lock.
final class AcceptFailureLog: Sendable {
    let logger: Logger
    private let state = Locked((lastLogged: ContinuousClock.Instant?.none, since: 0))

    init(logger: Logger) { self.logger = logger }

    func failed(_ error: IOError) {
        let now = ContinuousClock.now
        let report = state.withLock { s -> Int? in
            s.since += 1
            if let last = s.lastLogged, now - last < .seconds(60) { return nil }
            defer { s = (now, 0) }
            return s.since
        }
        if let count = report {
            logger.error("cannot accept connections; pausing accepts for 250 ms at a time", metadata: [
                "error": "\(error)", "failures": "\(count)",
            ])
        }
    }
}
