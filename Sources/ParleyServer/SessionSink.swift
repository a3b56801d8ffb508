import NIOCore
import ParleyCore

/// Where a session's bytes go: each transport (native TCP now, WebSocket and IRC next) implements
/// it for one connection. The hub and ``Session`` never see a wire format or a NIO channel
/// pipeline, only this.
///
/// Thread safety: implementations are `Sendable`; every method except ``eventLoop`` and
/// ``format`` is called on ``eventLoop`` only.
public protocol SessionSink: AnyObject, Sendable {
    /// The loop that owns the connection; deliveries to it are grouped by this loop.
    var eventLoop: any EventLoop { get }
    /// The wire format the connection speaks (which of the hub's encoders made its bytes).
    var format: WireFormat { get }
    /// Queues bytes of ``format`` (one or more whole frames: a session coalesces the frames of a
    /// batch into chunks of up to 32 KiB), without flushing. A transport whose pipeline wraps
    /// messages (WebSocket) writes them below its frame encoder, as bytes.
    /// With `flush`, sends it and everything queued before it (one pipeline walk for both).
    /// `written` (optional) succeeds once the bytes have been handed to the operating system.
    func write(_ bytes: ByteBuffer, flush: Bool, written: EventLoopPromise<Void>?)
    /// Whether what was flushed before has drained below the connection's outbox bound.
    var isWritable: Bool { get }
    /// Stops or resumes reading from the connection (TCP then pushes back on the client).
    func setReading(_ reading: Bool)
    /// Tells the client why, if the protocol can, then closes the connection.
    func close(with error: ParleyError)
}

/// A wire format, by index into the hub's encoders.
/// Thread safety: a value type; `Sendable`.
public struct WireFormat: Hashable, Sendable {
    public let index: Int
    public init(index: Int) { self.index = index }
    /// The native protocol (length-prefixed JSON): always index 0.
    public static let native = WireFormat(index: 0)
    /// The native protocol's JSON, one WebSocket text message each (unmasked server frames).
    public static let webSocket = WireFormat(index: 1)
}

/// Turns domain events into one wire format's bytes. The hub encodes each event once per format
/// in use and hands the same bytes to every session of that format.
/// Thread safety: implementations are stateless and `Sendable`.
public protocol EventEncoder: Sendable {
    /// A whole frame for `event`.
    func encode(_ event: Event, allocator: ByteBufferAllocator) -> ByteBuffer
    /// The sender's copy of a stored message: the acknowledgement of the request `id`.
    func encodeAcknowledgement(_ message: StoredMessage, id: RequestID?, allocator: ByteBufferAllocator) -> ByteBuffer
    /// The answer to the request `id` that failed.
    func encodeError(_ error: ParleyError, id: RequestID?, allocator: ByteBufferAllocator) -> ByteBuffer
}
