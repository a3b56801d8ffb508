import NIOCore
import ParleyCore

extension ServerFrame {
    /// The frame of a `message` event, written straight into a buffer: the hot path, encoded once
    /// per message and shared by every recipient. Produces the same JSON object as encoding
    /// ``ServerFrame/message(_:id:replay:)`` (a test checks they decode equal).
    public static func messageFrame(_ stored: StoredMessage, id: RequestID? = nil, replay: Bool = false, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 120 + stored.text.utf8.count + stored.sender.utf8.count + stored.roomName.utf8.count)
        buffer.writeInteger(UInt32(0))  // the length, filled in below
        buffer.writeStaticString(#"{"type":"message","#)
        if let id {
            buffer.writeStaticString(#""id":"#)
            switch id {
            case .int(let value): buffer.writeString(String(value))
            case .string(let value): JSONText.write(value, into: &buffer)
            }
            buffer.writeStaticString(",")
        }
        buffer.writeStaticString(#""messageId":"#)
        buffer.writeString(String(stored.id))
        buffer.writeStaticString(#","time":""#)
        buffer.writeString(stored.time.iso8601)
        buffer.writeStaticString(#"","from":"#)
        JSONText.write(stored.sender, into: &buffer)
        switch stored.room {
        case .general, .group: buffer.writeStaticString(#","room":"#)
        case .direct: buffer.writeStaticString(#","to":"#)
        }
        JSONText.write(stored.roomName, into: &buffer)
        buffer.writeStaticString(#","text":"#)
        JSONText.write(stored.text, into: &buffer)
        if replay { buffer.writeStaticString(#","replay":true"#) }
        buffer.writeStaticString("}")
        buffer.setInteger(UInt32(buffer.readableBytes - 4), at: buffer.readerIndex)
        return buffer
    }
}

/// JSON string literals written by hand.
/// Thread safety: stateless.
enum JSONText {
    /// Writes `text` as a quoted JSON string, escaping `"`, `\` and control characters.
    static func write(_ text: String, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("\"")
        var text = text
        let clean = text.withUTF8 { bytes in !bytes.contains { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C } }
        if clean {
            buffer.writeString(text)
        } else {
            for byte in text.utf8 {
                switch byte {
                case 0x22: buffer.writeStaticString(#"\""#)
                case 0x5C: buffer.writeStaticString(#"\\"#)
                case 0x0A: buffer.writeStaticString(#"\n"#)
                case 0x0D: buffer.writeStaticString(#"\r"#)
                case 0x09: buffer.writeStaticString(#"\t"#)
                case 0..<0x20:
                    let hex = Array("0123456789abcdef".utf8)
                    buffer.writeStaticString(#"\u00"#)
                    buffer.writeInteger(hex[Int(byte >> 4)])
                    buffer.writeInteger(hex[Int(byte & 0xF)])
                default: buffer.writeInteger(byte)
                }
            }
        }
        buffer.writeStaticString("\"")
    }
}
