import NIOCore

/// RFC 6455 frame headers: the server's (unmasked) and a client's (masked) share the length
/// encoding, which lives here once.
/// Thread safety: stateless.
public enum WebSocketHeader {
    /// Writes a frame header: FIN (unless `fin` is false) and `opcode`, then `length` in the
    /// fewest bytes, with the mask bit set when `masked` (the caller writes the key and masks).
    public static func write(opcode: UInt8, length: Int, masked: Bool = false, fin: Bool = true, into buffer: inout ByteBuffer) {
        buffer.writeInteger((fin ? 0x80 : 0) | opcode)
        let mask: UInt8 = masked ? 0x80 : 0
        switch length {
        case ..<126:
            buffer.writeInteger(mask | UInt8(length))
        case ..<65536:
            buffer.writeInteger(mask | 126)
            buffer.writeInteger(UInt16(length))
        default:
            buffer.writeInteger(mask | 127)
            buffer.writeInteger(UInt64(length))
        }
    }
}
