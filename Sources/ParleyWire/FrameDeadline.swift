import NIOCore

/// Closes the door on a peer that starts a frame and never finishes it: from the first byte of a
/// frame, the whole frame must arrive within `limit`, or ``FrameError/timedOut(limit:)`` is fired
/// down the pipeline (the connection then answers `FRAME_TIMEOUT` and closes). A client that
/// drips a large frame one byte at a time would otherwise hold its buffer forever, since every
/// byte resets an idle timer.
///
/// The clock stops while the server itself is not reading (backpressure on a client whose
/// requests wait for storage): fire ``Reading/paused`` and ``Reading/resumed`` through the
/// pipeline when reading is switched off and on; on resuming, an unfinished frame gets the whole
/// limit again.
///
/// It only reads the 4-byte length prefixes to know where frames end; the bytes pass on unchanged
/// to ``FrameDecoder``. Thread safety: a `ChannelHandler`; used on its channel's event loop only.
public final class FrameDeadline: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    let limit: TimeAmount
    /// Bytes of the current frame's length prefix seen so far (0–3), and the prefix itself.
    private var headerBytes = 0
    private var header: UInt32 = 0
    /// Payload bytes still to come in the current frame.
    private var remaining = 0
    private var timer: Scheduled<Void>?
    private var paused = false

    /// User inbound events that stop and restart the clock.
    public enum Reading: Sendable {
        case paused
        case resumed
    }

    public init(limit: TimeAmount) {
        self.limit = limit
    }

    private var midFrame: Bool { remaining > 0 || headerBytes > 0 }

    private func arm(_ context: ChannelHandlerContext) {
        guard timer == nil, !paused, midFrame else { return }
        let limit = self.limit
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: limit) { [context] in
            context.fireErrorCaught(FrameError.timedOut(limit: limit))
        }
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event as? Reading {
        case .paused?:
            paused = true
            disarm()
        case .resumed?:
            paused = false
            arm(context)
        case nil:
            context.fireUserInboundEventTriggered(event)
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        var index = buffer.readerIndex
        let end = buffer.writerIndex
        // Whether a frame ended in this read: the clock then starts again for the next one.
        var completed = false
        while index < end {
            if remaining > 0 {
                let step = min(remaining, end - index)
                remaining -= step
                index += step
                if remaining == 0 { completed = true }
                continue
            }
            header = header << 8 | UInt32(buffer.getInteger(at: index, as: UInt8.self)!)
            headerBytes += 1
            index += 1
            if headerBytes == 4 {
                remaining = Int(header)
                headerBytes = 0
                header = 0
                if remaining == 0 { completed = true }
            }
        }
        if completed { disarm() }
        if midFrame { arm(context) }
        context.fireChannelRead(data)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }
}
