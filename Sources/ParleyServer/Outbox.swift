import NIOCore

/// What a connection has to send that NIO has not been given yet, coalesced into one buffer.
///
/// NIO keeps every write as its own entry (the buffer's storage, a pending-write record, the
/// promise): about 200 bytes besides the payload. A client that sends small requests and never
/// reads its replies used to cost the server 33–48 MB per connection that way (a 17-byte `pong`
/// per entry, up to a 4 MB bound that counted payload bytes only). So a connection hands NIO
/// bytes directly only while NIO's own queue is short (the channel's write-buffer water mark,
/// ``Outbox/waterMark``) and, during a read, not at all: replies to the requests of one read go
/// out as one write at the end of the read. Everything else is appended to one buffer here, whose
/// size is what the client really costs, and which is handed to NIO when the channel becomes
/// writable again.
///
/// The connection also stops reading a client whose outbox holds more than ``pauseAbove`` bytes
/// while the channel is not writable: a client that does not read its replies is not read
/// either, so it cannot make the server answer into a growing queue; TCP pushes back on it.
/// Events the hub fans out to it still queue here up to the outbox bound
/// (``Limits/maxOutboxBytes``), past which the session is closed as a slow consumer.
///
/// Thread safety: a value type, kept by its sink in a loop-bound box; used on the channel's loop.
struct Outbox {
    /// NIO's queue is short: over `high` bytes the channel reports not writable, and writable
    /// again below `low`. Small, so that NIO never holds many small writes.
    static let waterMark = WriteBufferWaterMark(low: 4 * 1024, high: 8 * 1024)
    /// Reading pauses while more than this is queued here and the channel is not writable.
    static let pauseAbove = 16 * 1024
    /// Replies gathered during one read before the read's further requests wait for them to be
    /// handed to NIO.
    static let readBatchLimit = 64 * 1024

    private(set) var queued: ByteBuffer?
    private var promises: [EventLoopPromise<Void>] = []
    /// Inside a read: writes wait for its end (``endRead()``).
    var reading = false

    var bytes: Int { queued?.readableBytes ?? 0 }
    var isEmpty: Bool { queued == nil }

    /// Whether `bytes` may go to NIO as they are: nothing is waiting here, no read is under way,
    /// and NIO's queue is short.
    func mayWriteDirectly(channelWritable: Bool) -> Bool {
        queued == nil && !reading && channelWritable
    }

    /// Whether requests already received should wait for what is queued here: outside a read,
    /// while anything waits; during one, past ``readBatchLimit`` of its replies.
    var holdsRequests: Bool { reading ? bytes > Self.readBatchLimit : !isEmpty }

    /// Appends `bytes` behind what is queued.
    /// - Returns: whether reading should pause (more than ``pauseAbove`` waits and the channel
    ///   cannot take more).
    mutating func append(_ bytes: ByteBuffer, promise: EventLoopPromise<Void>?, channelWritable: Bool) -> Bool {
        append(bytes, promise: promise)
        return !channelWritable && self.bytes > Self.pauseAbove
    }

    /// Appends `bytes` behind what is queued.
    mutating func append(_ bytes: ByteBuffer, promise: EventLoopPromise<Void>?) {
        if queued == nil {
            queued = bytes
        } else {
            queued!.writeImmutableBuffer(bytes)
        }
        if let promise { promises.append(promise) }
    }

    /// Everything queued, as one buffer, with one promise that completes all the writes' own.
    mutating func take(on loop: any EventLoop) -> (ByteBuffer, EventLoopPromise<Void>?)? {
        guard let buffer = queued else { return nil }
        queued = nil
        let waiting = promises
        promises = []
        switch waiting.count {
        case 0: return (buffer, nil)
        case 1: return (buffer, waiting[0])
        default:
            let combined = loop.makePromise(of: Void.self)
            combined.futureResult.whenComplete { result in
                for promise in waiting { promise.completeWith(result) }
            }
            return (buffer, combined)
        }
    }

    /// The connection has closed: whoever waits for queued writes is told they failed.
    mutating func discard() {
        queued = nil
        let waiting = promises
        promises = []
        for promise in waiting { promise.fail(ChannelError.ioOnClosedChannel) }
    }
}
