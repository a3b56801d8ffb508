import Logging
import NIOCore
import ParleyCore
import ParleyWire

/// The channel handler of the native protocol: hands each frame (already cut by
/// ``FrameDecoder``) to its ``Connection``, and turns framing errors and idleness into the
/// connection's events.
/// Thread safety: a `ChannelHandler`; used on its channel's event loop only.
final class NativeConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let connection: Connection
    private let logger: Logger
    private let maxOutbox: Int
    private var sink: NativeSink?

    init(hub: Hub, logger: Logger) {
        self.connection = Connection(hub: hub, logger: logger)
        self.logger = logger
        self.maxOutbox = hub.configuration.limits.maxOutboxBytes
    }

    func channelActive(context: ChannelHandlerContext) {
        let sink = NativeSink(channel: context.channel, maxOutbox: maxOutbox)
        self.sink = sink
        connection.start(sink: sink, address: context.channel.remoteAddress?.ipAddress ?? "?")
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.closed()
        sink?.closed()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The replies to every request of one read leave as one write, at its end.
        sink?.startRead()
        connection.received(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        sink?.endRead()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        sink?.writabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case FrameError.tooLarge(let length, let limit):
            logger.notice("frame too large", metadata: ["length": "\(length)", "peer": "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")"])
            connection.framingFailed(ParleyError(.frameTooLarge, "a frame of \(length) bytes is over the limit of \(limit) bytes"))
        case FrameError.emptyFrame:
            connection.framingFailed(ParleyError(.emptyFrame, "a frame must not be empty (length 0)"))
        case FrameError.timedOut(let limit):
            logger.notice("frame not finished in time", metadata: ["peer": "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")"])
            let seconds = Double(limit.nanoseconds) / 1e9
            let shown = seconds == seconds.rounded() ? "\(Int(seconds))" : "\(seconds)"
            connection.framingFailed(ParleyError(.frameTimeout, "a frame must arrive whole within \(shown) seconds of its first byte"))
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
        connection.idle()
    }
}
