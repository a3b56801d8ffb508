import NIOCore

/// The rules RFC 6455 sets for a client's frames that a frame decoder does not enforce: every
/// client frame is masked (§5.1), a continuation continues a message begun and not yet ended, and
/// no new data message starts inside a fragmented one (§5.4). A violation fails the connection
/// (close 1002).
/// Thread safety: a value type; used by one connection on its loop.
public struct WebSocketFrameRules: Sendable {
    private var fragmented = false

    public init() {}

    /// Checks the next frame's header; returns why it breaks the rules, or nil.
    /// - Parameter opcode: 0 continuation, 1 text, 2 binary, 8–10 control frames.
    public mutating func check(opcode: UInt8, fin: Bool, masked: Bool) -> String? {
        guard masked else { return "client frames must be masked" }
        switch opcode {
        case 0:
            guard fragmented else { return "a continuation frame with no message started" }
            if fin { fragmented = false }
        case 1, 2:
            guard !fragmented else { return "a new message before the fragmented one ended" }
            fragmented = !fin
        default:
            break
        }
        return nil
    }
}

/// Joins a WebSocket connection's data frames (already checked by ``WebSocketFrameRules`` and
/// unmasked) into messages, within a size limit, and says what each finished message is.
/// Thread safety: a value type; used by one connection.
public struct WebSocketMessageAssembler: Sendable {
    public enum Outcome: Equatable, Sendable {
        /// The message goes on in later frames.
        case incomplete
        /// A whole text message (one request).
        case text(ByteBuffer)
        case empty
        case binary
        /// The message has grown past the limit (`size` bytes so far): the connection closes.
        case tooLarge(size: Int)
    }

    public let maxMessageSize: Int
    private var kind: UInt8 = 1
    private var message = ByteBuffer()

    public init(maxMessageSize: Int) { self.maxMessageSize = maxMessageSize }

    /// The next data frame (opcode 0, 1 or 2).
    public mutating func receive(opcode: UInt8, fin: Bool, payload: ByteBuffer) -> Outcome {
        if opcode != 0 {
            kind = opcode
            message.clear()
        }
        if kind == 1 { message.writeImmutableBuffer(payload) }
        if message.readableBytes > maxMessageSize { return .tooLarge(size: message.readableBytes) }
        guard fin else { return .incomplete }
        let whole = message
        message = ByteBuffer()
        switch kind {
        case 1: return whole.readableBytes == 0 ? .empty : .text(whole)
        default: return .binary
        }
    }
}
