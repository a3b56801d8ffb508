import NIOCore
import ParleyCore
import ParleyWire
import Synchronization

/// Where a client's incoming frames wait: replies go to the request awaiting their id; events to
/// the first waiter whose predicate matches, or into a queue.
/// Thread safety: `Sendable`; state in a `Locked` (a pthread mutex), continuations resumed outside it.
final class Inbox: Sendable {
    struct Waiter {
        var token: Int
        var predicate: @Sendable (ServerFrame) -> Bool
        var continuation: CheckedContinuation<ServerFrame, any Error>
    }

    struct State {
        var buffered: [ServerFrame] = []
        var waiters: [Waiter] = []
        var replies: [RequestID: CheckedContinuation<ServerFrame, any Error>] = [:]
        var closed = false
        /// The first error the connection's pipeline reported (a failed TLS handshake, say).
        var failure: (any Error)?
        var nextToken = 0
        /// When someone iterates ``ParleyClient/events()``, events go here instead of the queue.
        var stream: AsyncStream<ServerFrame>.Continuation?
    }

    let state = Locked(State())

    /// The first error the connection's pipeline reported, if any.
    var failure: (any Error)? { state.withLock { $0.failure } }

    /// Remembers the first error the pipeline reports, for telling why the connection closed.
    func noteFailure(_ error: any Error) {
        state.withLock { s in
            if s.failure == nil { s.failure = error }
        }
    }

    /// Routes one incoming frame.
    func receive(_ frame: ServerFrame) {
        let continuation: CheckedContinuation<ServerFrame, any Error>? = state.withLock { s in
            if let id = frame.id, let waiting = s.replies.removeValue(forKey: id) { return waiting }
            if let index = s.waiters.firstIndex(where: { $0.predicate(frame) }) {
                return s.waiters.remove(at: index).continuation
            }
            if let stream = s.stream {
                stream.yield(frame)
            } else {
                s.buffered.append(frame)
            }
            return nil
        }
        continuation?.resume(returning: frame)
    }

    /// Fails every waiter: the connection has closed.
    func close() {
        let (waiters, replies) = state.withLock { s in
            s.closed = true
            s.stream?.finish()
            defer { s.waiters = []; s.replies = [:]; s.stream = nil }
            return (s.waiters, s.replies)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: ParleyClient.ClientError.closed) }
        for (_, reply) in replies { reply.resume(throwing: ParleyClient.ClientError.closed) }
    }

    /// Starts delivering events to a stream: first those queued, then each as it arrives.
    func makeStream() -> AsyncStream<ServerFrame> {
        let (stream, continuation) = AsyncStream.makeStream(of: ServerFrame.self)
        state.withLock { s in
            s.stream?.finish()
            for frame in s.buffered { continuation.yield(frame) }
            s.buffered.removeAll()
            if s.closed { continuation.finish() } else { s.stream = continuation }
        }
        return stream
    }

    /// The next queued or arriving event matching `predicate`. Ends with
    /// ``ParleyClient/ClientError/timedOut(_:)`` after `timeout` seconds, `CancellationError`
    /// when the task is cancelled, or ``ParleyClient/ClientError/closed``.
    func next(on loop: any EventLoop, timeout: Double, what: String, _ predicate: @escaping @Sendable (ServerFrame) -> Bool) async throws -> ServerFrame {
        let token = state.withLock { s in
            s.nextToken += 1
            return s.nextToken
        }
        let timer = loop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) {
            self.removeWaiter(token)?.continuation.resume(throwing: ParleyClient.ClientError.timedOut(what))
        }
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let outcome: Result<ServerFrame, any Error>? = state.withLock { s in
                    if let index = s.buffered.firstIndex(where: predicate) { return .success(s.buffered.remove(at: index)) }
                    if s.closed { return .failure(ParleyClient.ClientError.closed) }
                    s.waiters.append(Waiter(token: token, predicate: predicate, continuation: continuation))
                    return nil
                }
                if let outcome { continuation.resume(with: outcome) }
                // Cancelled before the waiter was in place: the handler found nothing to remove.
                if outcome == nil && Task.isCancelled { removeWaiter(token)?.continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            self.removeWaiter(token)?.continuation.resume(throwing: CancellationError())
        }
    }

    private func removeWaiter(_ token: Int) -> Waiter? {
        state.withLock { s in
            guard let index = s.waiters.firstIndex(where: { $0.token == token }) else { return nil }
            return s.waiters.remove(at: index)
        }
    }

    /// Sends with `send` and waits for the reply echoing `id`; cancellable like ``next(on:timeout:what:_:)``.
    func reply(to id: RequestID, on loop: any EventLoop, timeout: Double, send: () -> Void) async throws -> ServerFrame {
        let timer = loop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) {
            let waiting = self.state.withLock { $0.replies.removeValue(forKey: id) }
            waiting?.resume(throwing: ParleyClient.ClientError.timedOut("the reply to request \(id)"))
        }
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let closed = state.withLock { s in
                    if s.closed { return true }
                    s.replies[id] = continuation
                    return false
                }
                if closed {
                    continuation.resume(throwing: ParleyClient.ClientError.closed)
                } else if Task.isCancelled {
                    state.withLock { $0.replies.removeValue(forKey: id) }?.resume(throwing: CancellationError())
                } else {
                    send()
                }
            }
        } onCancel: {
            self.state.withLock { $0.replies.removeValue(forKey: id) }?.resume(throwing: CancellationError())
        }
    }
}

/// Frames the byte stream in place with NIO's single-step decoding (the same ``FrameDecoder``
/// as the server, no pipeline hop per frame), decodes each frame into the inbox, and answers the
/// server's pings.
/// Thread safety: a `ChannelHandler`; used on its channel's event loop only.
final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let inbox: Inbox
    let rawFrame: (@Sendable (ByteBuffer) -> Bool)?
    private var processor: NIOSingleStepByteToMessageProcessor<FrameDecoder>
    /// Whether reads are a byte stream of native frames (TCP), or one payload each (WebSocket).
    let framed: Bool

    init(inbox: Inbox, maxFrameSize: Int, framed: Bool = true, rawFrame: (@Sendable (ByteBuffer) -> Bool)?) {
        self.inbox = inbox
        self.rawFrame = rawFrame
        self.framed = framed
        self.processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxFrameSize: maxFrameSize), maximumBufferSize: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard framed else {
            handle(unwrapInboundIn(data), context: context)
            return
        }
        do {
            try processor.process(buffer: unwrapInboundIn(data)) { payload in
                handle(payload, context: context)
            }
        } catch {
            context.close(promise: nil)
        }
    }

    private func handle(_ payload: ByteBuffer, context: ChannelHandlerContext) {
        if let rawFrame, rawFrame(payload) { return }
        guard let frame = try? ServerFrame.decode(payload) else { return }
        if frame.type == "ping" && frame.id == nil {
            let json = Array(#"{"type":"pong"}"#.utf8)
            context.writeAndFlush(wrapOutboundOut(Frame.make(json, allocator: context.channel.allocator)), promise: nil)
            return
        }
        inbox.receive(frame)
    }

    func channelInactive(context: ChannelHandlerContext) {
        inbox.close()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        inbox.noteFailure(error)
        context.close(promise: nil)
    }
}
