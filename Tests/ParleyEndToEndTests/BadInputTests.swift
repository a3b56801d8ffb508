import Foundation
import NIOCore
import NIOPosix
import ParleyClient
import ParleyCore
import ParleyStore
import ParleyWire
import Testing

@Suite("End to end: bad input, limits and slow clients", .timeLimit(.minutes(2)))
struct BadInputTests {
    static func framed(_ text: String) -> [UInt8] { framed(Array(text.utf8)) }
    static func framed(_ payload: [UInt8]) -> [UInt8] {
        withUnsafeBytes(of: UInt32(payload.count).bigEndian, Array.init) + payload
    }

    @Test("a frame begun and never finished is cut off after the frame timeout; a frame in pieces within it is fine")
    func slowFrame() async throws {
        let s = try await TestServer.start { $0.frameTimeout = 2 }
        defer { s.removeData() }
        let whole = try await s.user("Patient")
        let ping = Self.framed(#"{"type":"ping","id":"split"}"#)
        whole.sendRaw(Array(ping.prefix(3)))
        whole.sendRaw(Array(ping.dropFirst(3)))
        #expect(try await whole.nextFrame { $0.id == .string("split") }.type == "pong")
        let dripper = try await s.user("Dripper")
        // 100 bytes announced, 10 sent, and then nothing more.
        dripper.sendRaw(withUnsafeBytes(of: UInt32(100).bigEndian, Array.init) + Array(repeating: 0x41, count: 10))
        let error = try await dripper.nextFrame(timeout: 10) { $0.type == "error" }
        #expect(error.code == "FRAME_TIMEOUT")
        #expect(error.message == "a frame must arrive whole within 2 seconds of its first byte")
        try await dripper.waitForClose(timeout: 10)
        #expect(whole.isActive, "others are unaffected")
        await whole.close()
        await s.stop()
    }

    @Test("malformed requests get a precise error and the connection stays open")
    func malformed() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let alice = try await s.user("Alice")
        let c = try await s.connect()
        let cases: [([UInt8], ParleyError.Code)] = [
            (Self.framed("{this is not json"), .badJSON),
            (Self.framed("[1,2,3]"), .badRequest),
            (Self.framed(#"{"type":"teleport"}"#), .unknownType),
            (Self.framed(#"{"type":"login","username":"alice"}"#), .badRequest),
            (Self.framed(#"{"type":"login","username":"alice","password":7}"#), .badRequest),
            (Self.framed([0x7B, 0x22, 0xC3, 0x28, 0x22, 0x7D]), .badUTF8),
            (Self.framed(#"{"type":"send","room":"general","text":"hi"}"#), .notAuthenticated),
            (Self.framed(#"{"type":"who"}"#), .notAuthenticated),
        ]
        for (bytes, code) in cases {
            c.sendRaw(bytes)
            let error = try await c.nextFrame("error \(code)") { $0.type == "error" }
            #expect(error.code == code.rawValue, "\(error.message ?? "")")
            #expect(!(error.message ?? "").isEmpty)
        }
        // Still open and answering.
        #expect(try await c.request(.ping).type == "pong")
        #expect(c.isActive)
        // The same holds after login; the store is untouched by all of it.
        try await c.register("Mallory", password: TestServer.password)
        try await c.login("Mallory", password: TestServer.password)
        c.sendRaw(Self.framed(#"{"type":"send","room":"general"}"#))
        #expect(try await c.nextFrame { $0.type == "error" }.message == "missing field 'text'")
        c.sendRaw(Self.framed(#"{"type":"send","room":"general","to":"bob","text":"x"}"#))
        #expect(try await c.nextFrame { $0.type == "error" }.code == "BAD_REQUEST")
        // Text with control characters is refused, not stored cut short (SQLite ends TEXT at NUL).
        await expectError(.invalidText) { try await c.send("a\u{0}b") }
        await expectError(.invalidText) { try await c.send("\u{0}secret") }
        let lines = try await c.send("two\nlines\tok")
        let page = try await c.request(.history(.room("general"), before: nil, limit: 1))
        #expect(page.messages?.last?.text == "two\nlines\tok" && page.messages?.last?.messageId == lines.messageId, "stored as acknowledged")
        #expect(try await alice.send("still serving").text == "still serving")
        #expect(try s.server.storage.messageCount() == 2)
        await c.close()
        await alice.close()
        await s.stop()
    }

    @Test("an oversized or zero length prefix: an error frame, then the connection is closed", arguments: [UInt32(65537), UInt32(0), UInt32.max])
    func badLength(_ length: UInt32) async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let alice = try await s.user("Alice")
        let c = try await s.connect()
        c.sendRaw(withUnsafeBytes(of: length.bigEndian, Array.init) + Array("{}".utf8))
        let error = try await c.nextFrame("a framing error") { $0.type == "error" }
        #expect(error.code == (length == 0 ? "EMPTY_FRAME" : "FRAME_TOO_LARGE"))
        try await c.waitForClose()
        #expect(try await alice.send("unaffected").text == "unaffected")
        await alice.close()
        await s.stop()
    }

    @Test("garbage bytes, connections closed mid-frame and half-open sockets are cleaned up; others are unaffected")
    func garbageAndHalfOpen() async throws {
        let s = try await TestServer.start { $0.loginTimeout = 3 }
        defer { s.removeData() }
        let alice = try await s.user("Alice")
        let baseline = s.server.connectionCount
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let c = try await s.connect()
            c.sendRaw((0..<512).map { _ in UInt8.random(in: 0...255, using: &generator) })
            try? await c.waitForClose(timeout: 5)
            await c.close()
        }
        for _ in 0..<20 {
            // A frame that promises 100 bytes and delivers 10, then the client goes away.
            let c = try await s.connect()
            c.sendRaw(withUnsafeBytes(of: UInt32(100).bigEndian, Array.init) + Array(repeating: 0x41, count: 10))
            await c.close()
        }
        try await eventually("connections to be cleaned up") { s.server.connectionCount == baseline }
        // A connection that never logs in is closed after the login timeout, with a reason.
        let silent = try await s.connect()
        let timeout = try await silent.nextFrame("the login timeout") { $0.type == "error" }
        #expect(timeout.code == "LOGIN_TIMEOUT")
        try await silent.waitForClose()
        #expect(try await alice.send("fine").text == "fine")
        #expect(try s.server.storage.messageCount() == 1)
        await alice.close()
        await s.stop()
    }

    @Test("a client that never reads is disconnected; everyone else gets every message")
    func slowConsumer() async throws {
        let s = try await TestServer.start { $0.limits.maxOutboxBytes = 64 * 1024 }
        defer { s.removeData() }
        let sender = try await s.user("Sender")
        let reader = try await s.user("Reader")
        let lazy = try await s.connect(receiveBuffer: 4096)
        try await lazy.register("Lazy", password: TestServer.password)
        try await lazy.login("Lazy", password: TestServer.password)
        _ = try await lazy.nextFrame { $0.type == "replay_end" }
        try await lazy.channel.setOption(ChannelOptions.autoRead, value: false).get()

        let text = String(repeating: "z", count: 3000)
        let count = 3000
        for i in 0..<count { try sender.send(.send(.room("general"), text: text), id: .int(Int64(i))) }
        let lastAck = try await sender.nextFrame(timeout: 60, "the last acknowledgement") { $0.id == .int(Int64(count - 1)) }
        #expect(lastAck.type == "message")
        var received = 0
        while received < count {
            _ = try await reader.nextMessage(timeout: 30) { $0.from == "Sender" }
            received += 1
        }
        #expect(received == count)
        try await eventually("the slow client to be dropped", timeout: 20) { !lazy.isActive || s.server.connectionCount == 2 }
        #expect(try await reader.request(.who()).users == ["Reader", "Sender"])
        for client in [sender, reader, lazy] { await client.close() }
        await s.stop()
    }

    @Test("silent connections are pinged; one that answers stays, one that does not is closed with IDLE_TIMEOUT")
    func idle() async throws {
        let s = try await TestServer.start { $0.idleTimeout = 1.5 }
        defer { s.removeData() }
        // The client library answers pings, so this one survives many idle periods. It has an
        // event loop of its own: the shared one may be busy with other tests' floods for longer
        // than an idle period, which would be a stalled client, not what this test is about.
        let lively = try await ParleyClient.connect(host: "127.0.0.1", port: s.port)
        try await lively.register("Lively", password: TestServer.password)
        try await lively.login("Lively", password: TestServer.password)
        _ = try await lively.replay()
        // This one stops reading, so it never sees the ping nor answers it.
        let (silent, _) = try await s.login("Silent")
        try await silent.channel.setOption(ChannelOptions.autoRead, value: false).get()
        try await silent.waitForClose(timeout: 10)
        try await lively.wentOffline("Silent")
        #expect(lively.isActive)
        #expect(try await lively.request(.who()).users == ["Lively"])
        await lively.close()
        await s.stop()
    }

    @Test("a client flooding requests gets every answer and does not hold up the others")
    func flood() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let flooder = try await s.user("Flooder")
        let alice = try await s.user("Alice")
        let bob = try await s.user("Bob")
        var bytes: [UInt8] = []
        for i in 0..<5_000 { bytes += BadInputTests.framed(#"{"type":"ping","id":\#(i)}"#) }
        flooder.sendRaw(bytes)
        // Meanwhile the others talk as usual.
        for i in 0..<20 {
            let sent = try await alice.send("during the flood \(i)")
            #expect(try await bob.nextMessage { $0.messageId == sent.messageId }.text == sent.text)
        }
        var pongs = 0
        while pongs < 5_000 {
            _ = try await flooder.nextFrame(timeout: 30, "pong \(pongs)") { $0.type == "pong" }
            pongs += 1
        }
        #expect(pongs == 5_000)
        #expect(flooder.isActive)
        for client in [flooder, alice, bob] { await client.close() }
        await s.stop()
    }

    @Test("repeated failed logins are slowed down, even with the right password")
    func throttle() async throws {
        // A long back-off, so that a slow machine (the ThreadSanitizer pass) cannot outlast it.
        let s = try await TestServer.start { $0.loginBackoff = 60 }
        defer { s.removeData() }
        let c = try await s.connect()
        try await c.register("Target", password: TestServer.password)
        for _ in 0..<5 { await expectError(.invalidCredentials) { try await c.login("target", password: "guessing-wrong") } }
        await expectError(.rateLimited) { try await c.login("target", password: TestServer.password) }
        await c.close()
        await s.stop()
    }

    @Test("guests: only with --guests, a taken name gets a suffix, no groups")
    func guests() async throws {
        let closed = try await TestServer.start()
        let c = try await closed.connect()
        #expect(c.hello.guests == false)
        await expectError(.guestsDisabled) { try await c.guest("visitor") }
        await c.close()
        await closed.stop()
        closed.removeData()

        let s = try await TestServer.start { $0.guests = true }
        defer { s.removeData() }
        let bob = try await s.user("Bob")
        let g1 = try await s.connect()
        #expect(g1.hello.guests == true)
        let welcome = try await g1.guest("bob")
        #expect(welcome.username == "bob2")
        #expect(welcome.guest == true)
        _ = try await g1.nextFrame { $0.type == "replay_end" }
        let g2 = try await s.connect()
        #expect(try await g2.guest("Visitor").username == "Visitor")
        let g3 = try await s.connect()
        #expect(try await g3.guest("visitor").username == "visitor2")
        #expect(try await bob.presence(of: "bob2") == true)
        let hi = try await g1.send("hello from a guest")
        #expect(try await bob.nextMessage { $0.text == "hello from a guest" }.from == "bob2")
        #expect(hi.from == "bob2")
        await expectError(.guestNotAllowed) { try await g1.request(.group(.create(group: "g", inviteOnly: false))) }
        // A registered user cannot take a name an online guest holds.
        let d = try await s.connect()
        await expectError(.usernameExists) { try await d.register("Visitor", password: TestServer.password) }
        for client in [bob, g1, g2, g3, d] { await client.close() }
        await s.stop()
    }
}
