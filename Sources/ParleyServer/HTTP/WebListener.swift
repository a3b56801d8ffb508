import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOPosix
import NIOWebSocket
import ParleyCore
import ParleyWire

/// The HTTP front door (Hummingbird 2 on the server's own event loops): `/` serves the browser
/// client from memory (ETag, gzip, a strict Content-Security-Policy), and `/ws` upgrades to a
/// WebSocket that carries the native protocol's JSON, one request or event per text message.
/// Behind the upgrade a WebSocket connection is a ``Connection`` with a ``WebSocketSink``: the
/// same state machine, limits, sessions and fan-out as a native connection. With a certificate
/// (``tls``) every connection speaks TLS first: HTTPS, and WSS after an upgrade.
/// Thread safety: `Sendable`; its mutable parts are behind locks.
struct WebListener: Listener {
    let name = "http"
    let host: String
    let port: Int
    let configuration: ServerConfiguration
    /// The certificate to speak TLS with; nil for plain HTTP.
    let tls: TLSContextBox?
    var speaksTLS: Bool { tls != nil }
    let assets: WebAssets
    /// Open WebSocket connections by channel (for the farewell at shutdown) and the running app.
    private let runtime = Runtime()

    final class Runtime: Sendable {
        let sockets = Locked<[ObjectIdentifier: WebSocketSink]>([:])
        let task = Locked<Task<Void, Never>?>(nil)
    }

    init(host: String, port: Int, configuration: ServerConfiguration, tls: TLSContextBox? = nil) throws {
        self.host = host
        self.port = port
        self.configuration = configuration
        self.tls = tls
        self.assets = try WebAssets()
    }

    static let contentSecurityPolicy = [
        "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
        "connect-src 'self'", "manifest-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
    ].joined(separator: "; ")

    func bind(hub: Hub, group: any EventLoopGroup, admit: @escaping @Sendable (any Channel) -> ParleyError?, logger: Logger) async throws -> any Channel {
        let router = Router()
        let assets = self.assets
        for path in assets.assets.keys {
            router.get(RouterPath(path)) { request, _ -> Response in
                Self.respond(assets.assets[path]!, to: request)
            }
        }
        let allowed = Set(configuration.allowedOrigins)
        let names = Self.ownNames(configuration)
        router.get("/ws") { request, _ -> Response in
            // Reached only when the upgrade was declined: say why.
            if !Self.originAllowed(request.headers, authority: request.head.authority, allowed: allowed, names: names) {
                return Self.text(.forbidden, "this page's origin may not open a WebSocket here\n")
            }
            return Self.text(.badRequest, "/ws is a WebSocket endpoint: connect with a WebSocket client\n")
        }
        // Hummingbird logs every connection that closes before its upgrade finished (one we closed
        // for being too slow, say) as an error: one line per connection anyone can cause. Its
        // logs are kept for debugging; ours say what matters.
        var hbLogger = logger
        hbLogger.logLevel = logger.logLevel <= .debug ? logger.logLevel : .critical
        let limits = configuration.limits
        let configuration = self.configuration
        let runtime = self.runtime
        let webSocket = HTTP1WebSocketUpgradeChannel.Configuration(
            http1: .init(idleTimeout: .milliseconds(Int64(configuration.httpIdleTimeout * 1000))),
            ws: .init(maxFrameSize: limits.maxFrameSize * 2, autoPing: .disabled, validateUTF8: false))
        let headTimeout = TimeAmount.milliseconds(Int64(configuration.frameTimeout * 1000))
        let tls = self.tls
        let server = HTTPServerBuilder { responder -> any ServerChildChannel in
            let http = RequestDeadlineChannel(base: HTTP1WebSocketUpgradeChannel(responder: responder, configuration: webSocket) {
                head, channel, _ -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> in
                guard head.path == "/ws" || head.path?.hasPrefix("/ws?") == true,
                      Self.originAllowed(head.headerFields, authority: head.authority, allowed: allowed, names: names) else { return .dontUpgrade }
                let address = Self.clientAddress(channel: channel, headers: head.headerFields, trusted: configuration.trustedProxies)
                return .upgrade([:]) { inbound, _, _ in
                    await Self.serve(inbound: inbound, channel: channel, address: address, hub: hub,
                                     runtime: runtime, configuration: configuration, logger: logger)
                }
            }, limit: headTimeout, admit: admit)
            // TLS outermost: its handler is added first, the deadline and refusal behind it.
            guard let tls else { return http }
            return TLSChildChannel(base: http, tls: tls, logger: logger)
        }
        let running = group.next().makePromise(of: (any Channel).self)
        let app = Application(
            router: router, server: server,
            configuration: .init(address: .hostname(host, port: port), serverName: nil, backlog: 4096),
            onServerRunning: { channel in
                // Out of file descriptors, Hummingbird's accept loop would retry at once, forever
                // (a core at 100 %): pause accepting as the native listener does. (This is the
                // listening socket's pipeline, which never has TLS: `.first` is right here.)
                try? await channel.pipeline.addHandler(AcceptPause(log: AcceptFailureLog(logger: logger)), position: .first)
                running.succeed(channel)
            },
            eventLoopGroupProvider: .shared(group), logger: hbLogger)
        let task = Task {
            do { try await app.run() } catch { running.fail(error) }
        }
        runtime.task.withLock { $0 = task }
        return try await running.futureResult.get()
    }

    /// Messages of one connection handed to its loop and not yet known to be handled.
    static let maxAhead = 64
    /// ...and at most this many bytes of them.
    static let maxAheadBytes = 64 * 1024

    /// One WebSocket connection, from the upgrade to its close.
    private static func serve(inbound: WebSocketInboundStream, channel: any Channel, address: String, hub: Hub, runtime: Runtime,
                              configuration: ServerConfiguration, logger: Logger) async {
        let limits = configuration.limits
        let started: (NIOLoopBound<Connection>, WebSocketSink)? = try? await channel.eventLoop.submit {
            let tap = WebSocketTap()
            let operations = channel.pipeline.syncOperations
            // Nearest the socket among the plaintext handlers (behind TLS when there is TLS): the
            // tap writes below the frame encoder, and its writes must still be encrypted.
            let idle = IdleStateHandler(readTimeout: .milliseconds(Int64(configuration.idleTimeout * 1000)))
            try operations.addHandlerAtPlaintextStart(idle)
            try operations.addHandler(tap, position: .after(idle))
            let sink = WebSocketSink(channel: channel, output: try operations.context(handler: tap), maxOutbox: limits.maxOutboxBytes)
            tap.onWritabilityChanged = { sink.writabilityChanged() }
            // RFC 6455 §5.1, §5.4: unmasked client frames and continuations of no message fail
            // the connection (1002). (It was counted against the connection limits at accept.)
            let check = WebSocketFrameCheck()
            try operations.addHandler(check, position: .after(try operations.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self)))
            check.onViolation = { reason in sink.finish(with: nil, code: 1002, reason: reason) }
            // NIO's own queue stays short; the sink's Outbox holds the rest, coalesced.
            _ = channel.setOption(ChannelOptions.writeBufferWaterMark, value: Outbox.waterMark)
            // Every frame of a read is decoded and queued before back-pressure can stop the next
            // read: small reads keep that queue small (a 256 KB read of tiny frames cost over 1 MB).
            _ = channel.setOption(ChannelOptions.maxMessagesPerRead, value: 1)
            _ = channel.setOption(ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 1024, maximum: 16384))
            let connection = Connection(hub: hub, logger: logger)
            tap.onIdle = { connection.idle() }
            let id = ObjectIdentifier(channel)
            runtime.sockets.withLock { $0[id] = sink }
            channel.closeFuture.whenComplete { _ in
                runtime.sockets.withLock { $0[id] = nil }
                connection.closed()
                sink.closed()
            }
            connection.start(sink: sink, address: address)
            return (NIOLoopBound(connection, eventLoop: channel.eventLoop), sink)
        }.get()
        guard let (bound, sink) = started else {
            // Refused (over a connection limit): the sink closes once the error is written.
            try? await channel.closeFuture.get()
            return
        }
        var assembler = WebSocketMessageAssembler(maxMessageSize: limits.maxFrameSize)
        var ahead = 0
        var aheadBytes = 0
        do {
            for try await frame in inbound {
                let opcode: UInt8 = switch frame.opcode {
                case .continuation: 0
                case .text: 1
                case .binary: 2
                }
                let outcome = assembler.receive(opcode: opcode, fin: frame.fin, payload: frame.data)
                if case .tooLarge(let size) = outcome {
                    try await channel.eventLoop.submit {
                        bound.value.framingFailed(ParleyError(.frameTooLarge, "a message of \(size) bytes or more is over the limit of \(limits.maxFrameSize) bytes"))
                    }.get()
                    // The sink closes with 1009 once the error is written; returning earlier
                    // would have Hummingbird send a close of its own first.
                    try? await channel.closeFuture.get()
                    return
                }
                if case .incomplete = outcome { continue }
                let deliver = { @Sendable in
                    let connection = bound.value
                    switch outcome {
                    case .text(let request):
                        connection.received(request)
                    case .empty:
                        connection.rejected(ParleyError(.emptyFrame, "a message must not be empty"))
                    default:
                        connection.rejected(ParleyError(.badRequest, "send requests as WebSocket text messages, not binary"))
                    }
                }
                // Messages are handed to the loop without waiting for each, so that what a client
                // sent in one burst is handled in one turn of the loop (as a native connection's
                // frames from one read are), which keeps the hub's batches large. At most
                // `maxAhead` wait on the loop; a pause (asked on the loop) is seen at once.
                ahead += 1
                if case .text(let request) = outcome { aheadBytes += request.readableBytes }
                if ahead < Self.maxAhead && aheadBytes < Self.maxAheadBytes && !sink.pauseRequested {
                    channel.eventLoop.execute(deliver)
                } else {
                    try await channel.eventLoop.submit(deliver).get()
                    ahead = 0
                    aheadBytes = 0
                    if sink.pauseRequested { await sink.waitUntilReading() }
                }
            }
        } catch {
            logger.debug("websocket closed", metadata: ["error": "\(error)"])
        }
    }

    /// Says goodbye to a WebSocket connection (the `shutdown` notice, then a close with 1001);
    /// other HTTP connections just close.
    func farewell(_ channel: any Channel, message: String) {
        guard let sink = runtime.sockets.withLock({ $0[ObjectIdentifier(channel)] }) else {
            channel.close(promise: nil)
            return
        }
        let notice = NativeEncoder().encode(.shutdown(message: message), allocator: channel.allocator)
        sink.finish(with: notice, code: 1001, reason: "server shutting down", grace: .seconds(10))
    }

    func stop() async {
        guard let task = runtime.task.withLock({ $0 }) else { return }
        task.cancel()
        await task.value
    }

    // MARK: HTTP

    static func respond(_ asset: WebAssets.Asset, to request: Request) -> Response {
        var headers: HTTPFields = [
            .contentType: asset.contentType,
            .eTag: asset.etag,
            .cacheControl: "no-cache",
            .vary: "Accept-Encoding",
            .xContentTypeOptions: "nosniff",
            HTTPField.Name("Referrer-Policy")!: "no-referrer",
        ]
        if asset.contentType.hasPrefix("text/html") {
            headers[.contentSecurityPolicy] = contentSecurityPolicy
        }
        if let match = request.headers[.ifNoneMatch], match.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == asset.etag || $0 == "*" }) {
            return Response(status: .notModified, headers: headers)
        }
        var body = asset.body
        if let gzipped = asset.gzipped, acceptsGzip(request.headers[.acceptEncoding]) {
            headers[.contentEncoding] = "gzip"
            body = gzipped
        }
        headers[.contentLength] = "\(body.readableBytes)"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }

    static func acceptsGzip(_ header: String?) -> Bool {
        guard let header else { return false }
        return header.split(separator: ",").contains { part in
            let fields = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.first?.lowercased() == "gzip" else { return false }
            return !fields.dropFirst().contains { $0.replacingOccurrences(of: " ", with: "") == "q=0" }
        }
    }

    static func text(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// A page may open the WebSocket only from the server's own address (its `Origin` names the
    /// `Host` it asked) or from an allowed origin. A request without `Origin` comes from a
    /// program, not a page, and is let through: browsers always send it.
    ///
    /// "Our own origin" comes from what the operator configured (``ServerConfiguration/publicNames``
    /// and the listening host), loopback names and IP address literals, never from the request's
    /// `Host`: a page on `rebind.example` whose name an attacker points at this server's address
    /// (DNS rebinding) sends `Host: rebind.example` and a matching `Origin`.
    ///
    /// An origin naming an IP address (no name to rebind) is ours when the request was sent to
    /// that same address; a loopback origin when the request was sent to a loopback address or
    /// name. A page on some other address, or on another local port's server reached through a
    /// public address, is not.
    static func originAllowed(_ headers: HTTPFields, authority: String?, allowed: Set<String>, names: Set<String>) -> Bool {
        guard let origin = headers[.origin] else { return true }
        if allowed.contains(origin) { return true }
        guard let host = originHost(origin) else { return false }
        if names.contains(host) { return true }
        guard let requested = authority.flatMap({ originHost("http://" + $0) }) else { return false }
        if isLoopback(host) { return isLoopback(requested) }
        return isAddressLiteral(host) && host == requested
    }

    /// Whether `host` names this machine's loopback interface.
    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host.hasSuffix(".localhost") || host == "::1" { return true }
        var v4 = in_addr()
        return inet_pton(AF_INET, host, &v4) == 1 && UInt32(bigEndian: v4.s_addr) >> 24 == 127
    }

    /// The host of an `http` or `https` origin (`scheme://host[:port]`), lower-cased, without
    /// brackets; nil for anything else.
    static func originHost(_ origin: String) -> String? {
        let lower = origin.lowercased()
        guard let schemeEnd = lower.range(of: "://"), ["http", "https"].contains(String(lower[..<schemeEnd.lowerBound])) else { return nil }
        var rest = lower[schemeEnd.upperBound...]
        guard !rest.isEmpty, !rest.contains("/"), !rest.contains("@") else { return nil }
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            return String(rest[rest.index(after: rest.startIndex)..<close])
        }
        if let colon = rest.lastIndex(of: ":") {
            // A port is digits only (`http://127.0.0.1:8080.evil.example` names evil.example).
            let port = rest.suffix(from: rest.index(after: colon))
            guard !port.isEmpty, port.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            rest = rest[..<colon]
        }
        return rest.isEmpty ? nil : String(rest)
    }

    /// Whether `host` is an IPv4 or IPv6 address literal (no name to rebind).
    static func isAddressLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// The host names that count as this server's own: the configured public names and the
    /// listening host (when it is a name), lower-cased.
    static func ownNames(_ configuration: ServerConfiguration) -> Set<String> {
        var names = Set(configuration.publicNames.map { $0.lowercased() })
        if !["0.0.0.0", "::", ""].contains(configuration.host) { names.insert(configuration.host.lowercased()) }
        return names
    }

    /// The client's IP address: the peer's, unless the peer is a trusted proxy, in which case the
    /// last address in `X-Forwarded-For` that is not itself a trusted proxy.
    static func clientAddress(channel: any Channel, headers: HTTPFields, trusted: [String]) -> String {
        let peer = channel.remoteAddress?.ipAddress ?? "?"
        guard trusted.contains(peer), let forwarded = headers[HTTPField.Name("X-Forwarded-For")!] else { return peer }
        let hops = forwarded.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return hops.last(where: { !trusted.contains($0) }) ?? peer
    }
}

/// Fails a WebSocket connection (close 1002) on frames RFC 6455 forbids a client to send and the
/// frame decoder lets through: an unmasked frame, a continuation with no message started, a new
/// message before the fragmented one ended. Sits right after the frame decoder.
/// Thread safety: a `ChannelHandler`; used on its channel's loop only.
final class WebSocketFrameCheck: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    var onViolation: ((String) -> Void)?
    private var rules = WebSocketFrameRules()
    private var failed = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let frame = unwrapInboundIn(data)
        if let violation = rules.check(opcode: UInt8(webSocketOpcode: frame.opcode), fin: frame.fin, masked: frame.maskKey != nil) {
            return fail(context, violation)
        }
        context.fireChannelRead(data)
    }

    private func fail(_ context: ChannelHandlerContext, _ reason: String) {
        failed = true
        if let onViolation { onViolation(reason) } else { context.close(promise: nil) }
    }
}
