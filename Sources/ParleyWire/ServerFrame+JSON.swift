import NIOCore
import ParleyCore

extension ServerFrame {
    /// Writes the frame's JSON object by hand: `type` first, `id` second, then the other fields
    /// in their declared order, absent ones left out. The same frame always gives the same bytes
    /// (`JSONEncoder` orders keys differently from run to run on Linux), which is what lets the
    /// examples in docs/PROTOCOL.md be checked byte for byte.
    public func writeJSON(into buffer: inout ByteBuffer) {
        var w = JSONObjectWriter(buffer: buffer)
        w.field("type", type)
        if let id { w.field("id", id) }
        w.field("code", code)
        w.field("message", message)
        if let retryAfter { w.raw("retryAfter", "\(retryAfter)") }
        w.field("reason", reason)
        w.field("until", until)
        w.field("server", server)
        w.field("version", version)
        w.field("registration", registration)
        w.field("guests", guests)
        w.field("maxFrame", maxFrame)
        w.field("maxText", maxText)
        w.field("maxTextBytes", maxTextBytes)
        w.field("result", result)
        w.field("username", username)
        w.field("guest", guest)
        w.field("token", token)
        w.field("online", online)
        w.messageFields(messageId: messageId, time: time, from: from, room: room, to: to, text: text, replay: replay)
        w.field("with", with)
        if let messages { w.array("messages", messages) { w, m in m.write(&w) } }
        w.field("more", more)
        w.field("before", before)
        w.field("count", count)
        if let users { w.array("users", users) { w, name in w.value(name) } }
        if let changes {
            w.array("changes", changes) { w, c in
                w.object { w in
                    w.field("username", c.username)
                    w.field("online", c.online)
                }
            }
        }
        w.field("snapshot", snapshot)
        w.field("everyone", everyone)
        w.field("presenceLimit", presenceLimit)
        if let groups {
            w.array("groups", groups) { w, g in
                w.object { w in
                    w.field("name", g.name)
                    w.field("owner", g.owner)
                    w.field("members", g.members)
                    w.field("inviteOnly", g.inviteOnly)
                    w.field("joined", g.joined)
                }
            }
        }
        if let members {
            w.array("members", members) { w, m in
                w.object { w in
                    w.field("username", m.username)
                    w.field("online", m.online)
                    w.field("owner", m.owner)
                }
            }
        }
        w.field("group", group)
        w.field("event", event)
        w.field("by", by)
        w.field("owner", owner)
        w.field("inviteOnly", inviteOnly)
        if let sessions {
            w.array("sessions", sessions) { w, s in
                w.object { w in
                    w.field("session", s.session)
                    w.field("transport", s.transport)
                    w.field("address", s.address)
                    w.field("since", s.since)
                    w.field("current", s.current)
                }
            }
        }
        buffer = w.finish()
    }
}

extension WireMessage {
    fileprivate func write(_ w: inout JSONObjectWriter) {
        w.object { w in
            w.messageFields(messageId: messageId, time: time, from: from, room: room, to: to, text: text, replay: replay)
        }
    }
}

/// Writes one JSON object field by field into a buffer.
/// Thread safety: a value type used by one thread at a time.
struct JSONObjectWriter {
    private var buffer: ByteBuffer
    /// Whether the object being written has a field yet, innermost last.
    private var hasField: [Bool] = [false]

    init(buffer: ByteBuffer) {
        self.buffer = buffer
        self.buffer.writeStaticString("{")
    }

    mutating func finish() -> ByteBuffer {
        buffer.writeStaticString("}")
        return buffer
    }

    private mutating func key(_ name: StaticString) {
        if hasField[hasField.count - 1] { buffer.writeStaticString(",") }
        hasField[hasField.count - 1] = true
        buffer.writeStaticString("\"")
        buffer.writeStaticString(name)
        buffer.writeStaticString("\":")
    }

    mutating func raw(_ name: StaticString, _ text: String) {
        key(name)
        buffer.writeString(text)
    }

    mutating func field(_ name: StaticString, _ value: String?) {
        guard let value else { return }
        key(name)
        JSONText.write(value, into: &buffer)
    }

    mutating func field(_ name: StaticString, _ value: Bool?) {
        guard let value else { return }
        key(name)
        if value { buffer.writeStaticString("true") } else { buffer.writeStaticString("false") }
    }

    mutating func field<I: BinaryInteger>(_ name: StaticString, _ value: I?) {
        guard let value else { return }
        key(name)
        buffer.writeString(String(value))
    }

    mutating func field(_ name: StaticString, _ value: RequestID) {
        key(name)
        switch value {
        case .int(let n): buffer.writeString(String(n))
        case .string(let s): JSONText.write(s, into: &buffer)
        }
    }

    /// The fields of a chat message, in the one order both `message` frames and history use.
    mutating func messageFields(messageId: Int64?, time: String?, from: String?, room: String?, to: String?, text: String?, replay: Bool?) {
        field("messageId", messageId)
        field("time", time)
        field("from", from)
        field("room", room)
        field("to", to)
        field("text", text)
        field("replay", replay)
    }

    /// A bare string value inside an array.
    mutating func value(_ text: String) {
        JSONText.write(text, into: &buffer)
    }

    mutating func array<T>(_ name: StaticString, _ items: [T], _ each: (inout JSONObjectWriter, T) -> Void) {
        key(name)
        buffer.writeStaticString("[")
        for (index, item) in items.enumerated() {
            if index > 0 { buffer.writeStaticString(",") }
            each(&self, item)
        }
        buffer.writeStaticString("]")
    }

    mutating func object(_ body: (inout JSONObjectWriter) -> Void) {
        buffer.writeStaticString("{")
        hasField.append(false)
        body(&self)
        hasField.removeLast()
        buffer.writeStaticString("}")
    }
}
