import HummingbirdCore
import Logging
import NIOCore

/// Wraps an HTTP child channel so that a connection must deliver its first request's head within
/// `limit` (the frame timeout) or be closed: a client that connects and says nothing, or trickles
/// its headers (slowloris), does not hold a connection. Later requests on a kept-alive connection
/// are Hummingbird's idle timeout's business, and an upgraded WebSocket has its own idle timer.
/// Thread safety: a value type; `Sendable`.
struct RequestDeadlineChannel<Base: ServerChildChannel>: ServerChildChannel {
    let base: Base
    let limit: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Base.Value> {
        do {
            try channel.pipeline.syncOperations.addHandler(FirstRequestDeadline(limit: limit), position: .first)
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
/// limit; removes itself once it has.
/// Thread safety: a `ChannelHandler`; used on its channel's loop only.
final class FirstRequestDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    let limit: TimeAmount
    private var timer: Scheduled<Void>?
    /// The last bytes seen (an empty line may straddle two reads).
    private var last: [UInt8] = []

    init(limit: TimeAmount) { self.limit = limit }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: limit) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data).readableBytesView
        let window = last + bytes.prefix(3)
        let found = window.firstRange(of: [13, 10, 13, 10]) != nil || bytes.firstRange(of: [13, 10, 13, 10]) != nil
        last = Array((last + bytes.suffix(3)).suffix(3))
        context.fireChannelRead(data)
        if found {
            timer?.cancel()
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}
