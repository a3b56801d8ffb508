import NIOCore
import ParleyCore
import ParleyWire
import Testing

@Suite("Request parsing")
struct RequestParserTests {
    static func parse(_ bytes: [UInt8]) -> Result<RequestEnvelope, RequestParser.Failure> {
        var buffer = ByteBuffer()
        buffer.writeBytes(bytes)
        return RequestParser.parse(buffer)
    }

    static func error(_ text: String) -> ParleyError? {
        if case .failure(let failure) = parse(Array(text.utf8)) { return failure.error }
        return nil
    }

    @Test("every request survives encoding and decoding", arguments: [
        ClientRequest.register(username: "a", password: "12345678"), .login(username: "b", credential: .password("p")), .login(username: "b", credential: .password("p"), since: 42, remember: true),
        .login(username: "b", credential: .token("t")), .guest(name: "g"),
        .send(.room("general"), text: "hi \"there\" ☃"), .send(.with("bob"), text: "psst"),
        .history(.room("devs"), before: 10, limit: 5), .history(.with("bob"), before: nil, limit: nil),
        .who(), .ping, .pong, .groups(), .myGroups(), .group(.create(group: "g", inviteOnly: true)), .group(.join(group: "g")),
        .group(.leave(group: "g")), .groupMembers(group: "g"), .group(.invite(group: "g", user: "u")), .group(.remove(group: "g", user: "u")),
        .group(.setMode(group: "g", inviteOnly: false)), .group(.transfer(group: "g", user: "u")), .group(.delete(group: "g")), .logout(), .logout(everywhere: true), .changePassword(current: "a", password: "b"), .sessions, .endSession(3), .revoke(token: "t"),
    ])
    func roundTrip(_ request: ClientRequest) throws {
        let envelope = RequestEnvelope(id: .string("r1"), request)
        let json = try JSONEncoder().encode(envelope)
        let parsed = try Self.parse(Array(json)).get()
        #expect(parsed == envelope)
    }

    @Test("bad input is named precisely")
    func errors() {
        #expect(Self.error("{not json") == ParleyError(.badJSON, "the frame is not valid JSON"))
        #expect(Self.error("[1,2]")?.message == "a frame must be a JSON object")
        #expect(Self.error(#""hello""#)?.code == .badRequest)
        #expect(Self.error(#"{"id":1}"#)?.message == "missing field 'type'")
        #expect(Self.error(#"{"type":42}"#)?.message == "field 'type' must be a string")
        #expect(Self.error(#"{"type":"dance"}"#) == ParleyError(.unknownType, "unknown request type 'dance'"))
        #expect(Self.error(#"{"type":"login","username":"a"}"#)?.message == "'login' needs exactly one of 'password' or 'token'")
        #expect(Self.error(#"{"type":"send","room":"general","text":5}"#)?.message == "field 'text' must be a string")
        #expect(Self.error(#"{"type":"send","text":"x"}"#)?.message == "'send' needs exactly one of 'room' or 'to'")
        #expect(Self.error(#"{"type":"history","room":"general","limit":"many"}"#)?.message == "field 'limit' must be an integer")
        #expect(Self.error(#"{"type":"who","id":{"x":1}}"#)?.message == "field 'id' must be a string or an integer")
    }

    @Test("parsing is strict: raw control characters in strings are BAD_JSON; numbers that do not fit name their field")
    func strict() {
        #expect(Self.error("{\"type\":\"send\",\"room\":\"general\",\"text\":\"a\u{1}b\"}")?.code == .badJSON)
        #expect(Self.error("{\"type\":\"send\",\"room\":\"general\",\"text\":\"tab\tinside\"}")?.code == .badJSON)
        #expect(Self.error("{\"type\":\"ping\",\n\t\"id\":1}") == nil, "white space between tokens is fine")
        // An escaped control character is valid JSON; the text rules decide about it later.
        #expect(Self.error(#"{"type":"send","room":"general","text":"a\u0000b"}"#) == nil)
        #expect(Self.error(#"{"type":"history","room":"general","limit":100000000000000000000}"#)
            == ParleyError(.badRequest, "field 'limit' must be an integer"))
        #expect(Self.error(#"{"type":"history","room":"general","limit":10.5}"#)
            == ParleyError(.badRequest, "field 'limit' must be an integer"))
        #expect(Self.error(#"{"type":"history","room":"general","before":1e400}"#)
            == ParleyError(.badRequest, "field 'before' must be an integer"))
    }

    @Test("invalid UTF-8 is BAD_UTF8")
    func utf8() {
        if case .failure(let failure) = Self.parse([0x7B, 0xFF, 0xFE, 0x7D]) {
            #expect(failure.error.code == .badUTF8)
        } else {
            Issue.record("invalid UTF-8 was accepted")
        }
    }

    @Test("the id is echoed on errors when it can be read")
    func idOnError() {
        if case .failure(let failure) = Self.parse(Array(#"{"type":"nope","id":"abc"}"#.utf8)) {
            #expect(failure.id == .string("abc"))
        } else {
            Issue.record("an unknown type was accepted")
        }
    }
}

import Foundation

@Suite("Server frames")
struct ServerFrameTests {
    @Test("the hand-written message frame decodes to the same object as the Codable one", arguments: [
        (Room.general, "general", "plain text", nil as RequestID?, false),
        (Room.group(id: 3), "Devs", "quotes \" backslash \\ newline \n tab \t bell \u{07} snow ☃", RequestID.int(42), false),
        (Room.direct("alice", "bob"), "bob", "é", RequestID.string("r\"1"), true),
    ])
    func fastEncoding(room: Room, name: String, text: String, id: RequestID?, replay: Bool) throws {
        let stored = StoredMessage(id: 99, time: Timestamp(milliseconds: 1_795_304_096_789), sender: "Alice", room: room, roomName: name, text: text)
        var fast = ServerFrame.messageFrame(stored, id: id, replay: replay, allocator: ByteBufferAllocator())
        var slow = ServerFrame.message(stored, id: id, replay: replay).frame(allocator: ByteBufferAllocator())
        let fastPayload = try #require(try FrameDecoder.next(from: &fast, maxFrameSize: 1 << 20))
        let slowPayload = try #require(try FrameDecoder.next(from: &slow, maxFrameSize: 1 << 20))
        #expect(try ServerFrame.decode(fastPayload) == ServerFrame.decode(slowPayload))
        #expect(try ServerFrame.decode(fastPayload).text == text)
    }
}
