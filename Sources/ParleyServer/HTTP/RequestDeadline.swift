import HummingbirdCore
import Logging
import NIOCore
import ParleyCore
import ParleyWire

/// Wraps an HTTP child channel so that a connection must deliver its first request's head within
/// `limit` (the frame timeout) or be closed: a client that connects and says nothing, or trickles
/// its headers (slowloris), does not hold a connection. Later requests on a kept-alive connection
/// are Hummingbird's idle timeout's business, and an upgraded WebSocket has its own idle timer.
/// Thread safety: a value type; `Sendable`.
///
/// Every accepted connection is counted against the connection limits here, plain HTTP as much as
/// WebSocket: one over a limit is answered `503` with the reason and closed.
struct RequestDeadlineChannel<Base: ServerChildChannel>: ServerChildChannel {
    let base: Base
    let limit: TimeAmount
    let admit: @Sendable (any Channel) -> ParleyError?

    /// Under TLS (``TLSChildChannel`` wraps this one) the refusal and the deadline go right behind
    /// the TLS handler: they read and write plaintext. A refused client then gets its 503 once
    /// the handshake is done (or is closed 2 s after connecting if it never finishes one); the
    /// deadline counts the handshake as part of the first request.
    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Base.Value> {
        do {
            if let refusal = admit(channel) {
                try channel.pipeline.syncOperations.addHandlerAtPlaintextStart(RefuseHTTP(reason: refusal.message))
            } else {
                try channel.pipeline.syncOperations.addHandlerAtPlaintextStart(FirstRequestDeadline(limit: limit))
            }
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return base.setup(channel: channel, logger: logger)
    }

    func handle(value: Base.Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Closes the connection unless the end of a request head (an empty line) arrives within the
/// limit; removes itself once it has. What cannot be the start of an HTTP request (anything but
/// a method token and a space) is answered 400 at once, and a head over 32 KiB 431: NIO's parser,
/// while an upgrade is being negotiated, would otherwise leave such a connection open until the
/// deadline.
/// Thread safety: a `ChannelHandler`; used on its channel's loop only.
final class FirstRequestDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    let limit: TimeAmount
    private var timer: Scheduled<Void>?
    private var scanner = HTTPHeadScanner()
    private var refused = false

    init(limit: TimeAmount) { self.limit = limit }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: limit) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        switch scanner.feed(unwrapInboundIn(data).readableBytesView) {
        case .refuse(let status):
            refuse(context, status)
        case .more:
            context.fireChannelRead(data)
        case .complete:
            context.fireChannelRead(data)
            timer?.cancel()
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    private func refuse(_ context: ChannelHandlerContext, _ status: String) {
        refused = true
        timer?.cancel()
        let response = "HTTP/1.1 \(status)\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        let channel = context.channel
        context.writeAndFlush(NIOAny(ByteBuffer(string: response))).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// Answers a connection over a connection limit with `503` and the reason, then closes it;
/// nothing it sends is read.
/// Thread safety: a `ChannelHandler`; used on its channel's loop only.
final class RefuseHTTP: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let reason: String
    private var answered = false

    init(reason: String) { self.reason = reason }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { answer(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        answer(context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    private func answer(_ context: ChannelHandlerContext) {
        guard !answered else { return }
        answered = true
        let body = reason + "\n"
        let response = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
            + "Retry-After: 10\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
        let channel = context.channel
        channel.close(once: context.writeAndFlush(NIOAny(ByteBuffer(string: response))), within: .seconds(2))
    }
}
