import Foundation
import NIOCore
import NIOPosix
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyWire
import Testing

/// "Safe in the open": what an attacker or a careless client can make the server do, tried over
/// real sockets, against the real executable where memory is measured.
@Suite("End to end: safe in the open", .timeLimit(.minutes(3)))
struct SafetyTests {
    static func nativePing() -> [UInt8] { BadInputTests.framed(#"{"type":"ping"}"#) }

    /// Registers and logs in `name` on `socket` (native framing), reading until the replay ends.
    static func nativeLogin(_ socket: RawSocket, _ name: String) throws {
        try socket.write(BadInputTests.framed(#"{"type":"register","username":"\#(name)","password":"\#(TestServer.password)"}"#))
        try socket.read(until: "registered")
        try socket.write(BadInputTests.framed(#"{"type":"login","username":"\#(name)","password":"\#(TestServer.password)"}"#))
        try socket.read(until: "replay_end")
    }

    /// Upgrades `socket` to a WebSocket at /ws.
    static func upgrade(_ socket: RawSocket, port: Int) throws {
        try socket.write("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        try socket.read(until: "hello")
    }

    /// Not under ThreadSanitizer (scripts/test sets TSAN_OPTIONS for that pass): its shadow memory
    /// multiplies every allocation, so resident memory says nothing about ours.
    @Test("a client that sends requests and never reads costs the server at most 512 KB, before and after login, native and WebSocket, small replies or large",
          .enabled(if: ProcessInfo.processInfo.environment["TSAN_OPTIONS"] == nil))
    func neverReadingClientsAreCheap() async throws {
        let directory = NSTemporaryDirectory() + "parley-process-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Timeouts longer than the test: whatever closes a connection here is the server's answer
        // to not reading.
        let (process, port, http) = try await ProcessTests.serve(directory: directory, environment: ["PARLEY_LOGIN_TIMEOUT": "600", "PARLEY_IDLE_TIMEOUT": "600"])
        defer { if process.isRunning { process.terminate() } }
        let pid = process.processIdentifier
        // Large replies: 60 messages of 3,900 characters make a history page of 64 KB.
        let poster = try await ParleyClient.connect(host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton)
        try await poster.register("poster", password: TestServer.password)
        try await poster.login("poster", password: TestServer.password)
        for i in 0..<60 { _ = try await poster.send(String(repeating: "\(i % 10)", count: 3900)) }
        await poster.close()
        let count = 24
        let historians = 6
        let report = try await onOwnThread { () throws -> (base: Int, peak: Int, closed: Int, sent: Int) in
            // Warm up: every path the flood takes has run once, so what grows is per connection.
            let warm = try RawSocket(port: port)
            try Self.nativeLogin(warm, "warm")
            for _ in 0..<2000 { try warm.write(Self.nativePing()) }
            try warm.read(until: String(repeating: #"{"type":"pong"}"#, count: 1))
            var sockets: [RawSocket] = []
            var nativePings: [RawSocket] = []
            var webPings: [RawSocket] = []
            for i in 0..<(count / 2) {
                let s = try RawSocket(port: port, receiveBuffer: 4096)
                if i % 2 == 1 { try Self.nativeLogin(s, "native\(i)") } else { try s.read(until: "hello") }
                nativePings.append(s)
            }
            for i in 0..<(count / 2) {
                let s = try RawSocket(port: http, receiveBuffer: 4096)
                try Self.upgrade(s, port: http)
                if i % 2 == 1 {
                    try s.write(RawWebSocket.masked(Array(#"{"type":"register","username":"web\#(i)","password":"\#(TestServer.password)"}"#.utf8)))
                    try s.read(until: "registered")
                    try s.write(RawWebSocket.masked(Array(#"{"type":"login","username":"web\#(i)","password":"\#(TestServer.password)"}"#.utf8)))
                    try s.read(until: "replay_end")
                }
                webPings.append(s)
            }
            var historySockets: [RawSocket] = []
            for i in 0..<historians {
                let s = try RawSocket(port: port, receiveBuffer: 4096)
                try s.read(until: "hello")
                try s.write(BadInputTests.framed(#"{"type":"register","username":"reader\#(i)","password":"\#(TestServer.password)"}"#))
                try s.read(until: "registered")
                try s.write(BadInputTests.framed(#"{"type":"login","username":"reader\#(i)","password":"\#(TestServer.password)","since":1000000}"#))
                try s.read(until: "replay_end")
                historySockets.append(s)
            }
            sockets = nativePings + webPings
            let base = ProcessMemory.resident(pid)
            ProcessMemory.resetPeak(pid)
            var peak = base
            // One pattern per transport: the native sockets first, then the WebSocket ones.
            let (sentNative, closedNative) = RawSocket.flood(Array(sockets.prefix(count / 2)), pattern: Array((0..<64).map { _ in Self.nativePing() }.joined())) {
                peak = max(peak, ProcessMemory.resident(pid))
            }
            print("native flood: sent \(sentNative), closed \(closedNative), resident \(ProcessMemory.resident(pid) / 1024) KB, peak \(peak / 1024) KB, base \(base / 1024) KB")
            let webPattern = Array((0..<64).map { _ in RawWebSocket.masked(Array(#"{"type":"ping"}"#.utf8)) }.joined())
            let (sentWeb, closedWeb) = RawSocket.flood(Array(sockets.suffix(count / 2)), pattern: webPattern) {
                peak = max(peak, ProcessMemory.resident(pid))
            }
            let historyPattern = Array((0..<16).map { _ in BadInputTests.framed(#"{"type":"history","id":2,"room":"general","limit":200}"#) }.joined())
            let (sentHistory, closedHistory) = RawSocket.flood(historySockets, pattern: historyPattern) {
                peak = max(peak, ProcessMemory.resident(pid))
            }
            peak = max(peak, ProcessMemory.peak(pid), ProcessMemory.resident(pid))
            withExtendedLifetime(sockets + historySockets) {}
            return (base, peak, closedNative + closedWeb + closedHistory, sentNative + sentWeb + sentHistory)
        }
        let perConnection = (report.peak - report.base) / (count + historians)
        print("never-reading clients: \(count + historians) connections, \(report.sent) bytes sent, \(report.closed) closed, server grew \((report.peak - report.base) / 1024) KB, \(perConnection / 1024) KB per connection")
        #expect(perConnection <= 512 * 1024, "each client that never reads cost the server \(perConnection / 1024) KB")
        // Nobody was cut off for not reading: the server simply stopped reading them.
        #expect(report.closed == 0)
        // ...and it still serves everyone else.
        let client = try await ParleyClient.connect(host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton)
        #expect(try await client.request(.ping).type == "pong")
        await client.close()
    }

    @Test("plain HTTP connections count against the per-address cap (64 by default); past it, new ones get 503 and are closed at once")
    func httpConnectionsAreCounted() async throws {
        // (Idle keep-alive closes after two minutes here, beyond the test's length even under TSan.)
        let (s, http) = try await WebSocketTests.start { $0.httpIdleTimeout = 120 }
        defer { s.removeData() }
        var held: [RawWebSocket] = []
        for _ in 0..<300 {
            let socket = try await RawWebSocket.connectPlain(port: http)
            try? await socket.sendRaw(Array("GET / HTTP/1.1\r\nHost: 127.0.0.1:\(http)\r\n\r\n".utf8))
            held.append(socket)
        }
        // 64 are held (keep-alive); the other 236 were answered 503 and closed.
        let all = held
        try await eventually("the connections past the cap to be closed") { all.filter(\.isActive).count == 64 }
        #expect(s.server.connectionCount == 64)
        let refused = try #require(held.first { !$0.isActive })
        #expect(String(decoding: try await refused.readToEnd(), as: UTF8.self).hasPrefix("HTTP/1.1 503"))
        // A native connection from the same address is refused too.
        await expectError(.tooManyConnections) { try await s.connect() }
        #expect(s.server.connectionCount == 64)
        for socket in held { await socket.close() }
        try await eventually("the held connections to be freed") { s.server.connectionCount == 0 }
        #expect(try await WebSocketTests.get("/", port: http).status == 200)
        await s.stop()
    }

    @Test("an idle keep-alive HTTP connection is closed after the HTTP idle timeout")
    func keepAliveIsBounded() async throws {
        let (s, http) = try await WebSocketTests.start { $0.httpIdleTimeout = 1 }
        defer { s.removeData() }
        let socket = try await RawWebSocket.connectPlain(port: http)
        try await socket.sendRaw(Array("GET / HTTP/1.1\r\nHost: 127.0.0.1:\(http)\r\n\r\n".utf8))
        let bytes = try await socket.readToEnd(timeout: 10)
        #expect(String(decoding: bytes.prefix(12), as: UTF8.self) == "HTTP/1.1 200")
        await s.stop()
    }

    @Test("the right login token logs in during a password-guessing attack on the account from many addresses")
    func tokenDuringAttack() async throws {
        let s = try await TestServer.start { $0.loginBackoff = 60 }
        defer { s.removeData() }
        let bob = try await s.connect()
        try await bob.register("bob", password: TestServer.password)
        let token = try #require(try await bob.login("bob", password: TestServer.password, remember: true).token)
        await bob.close()
        for i in 2...6 {
            let stranger = try await s.connect(from: "127.0.0.\(i)")
            await expectError(.invalidCredentials) { try await stranger.login("bob", password: "guess \(i)") }
            await stranger.close()
        }
        // Password guesses for bob are now throttled, from a new address too...
        let another = try await s.connect(from: "127.0.0.9")
        await expectError(.rateLimited) { try await another.login("bob", password: "guess 9") }
        // ...but bob's token still lets him in, from his own address or any other.
        let back = try await s.connect()
        #expect(try await back.login("bob", token: token).username == "bob")
        let elsewhere = try await s.connect(from: "127.0.0.8")
        #expect(try await elsewhere.login("bob", token: token).username == "bob")
        // Token failures are throttled per address only.
        let prober = try await s.connect(from: "127.0.0.10")
        for _ in 0..<5 { await expectError(.invalidCredentials) { try await prober.login("bob", token: "not-a-token") } }
        await expectError(.rateLimited) { try await prober.login("bob", token: token) }
        let third = try await s.connect(from: "127.0.0.11")
        #expect(try await third.login("bob", token: token).username == "bob")
        for c in [another, back, elsewhere, prober, third] { await c.close() }
        await s.stop()
    }

    @Test("login validates the name before anything is kept: a 33-character or 60,000-character name is INVALID_USERNAME")
    func loginValidatesTheName() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let c = try await s.connect()
        await expectError(.invalidUsername) { try await c.login(String(repeating: "a", count: 33), password: "whatever1") }
        await expectError(.invalidUsername) { try await c.login(String(repeating: "b", count: 60_000), token: "t") }
        await expectError(.invalidUsername) { try await c.login("bad\nname", token: "t") }
        await c.close()
        await s.stop()
    }

    @Test("log lines escape what clients send: no forged lines, no terminal escapes")
    func logsEscapeUntrustedText() async throws {
        let directory = NSTemporaryDirectory() + "parley-process-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let errors = Pipe()
        let (process, port, http) = try await ProcessTests.serve(directory: directory, errors: errors, logLevel: "debug")
        defer { if process.isRunning { process.terminate() } }
        let forged = "x\n2026-12-04T00:00:00+0000 info parley: user=admin [ParleyServer] logged in\u{1B}]0;owned\u{07}\u{1B}[2J"
        let c = try await ParleyClient.connect(host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton)
        _ = try? await c.login(forged, password: "whatever1")
        _ = try? await c.register(forged, password: "whatever1")
        _ = try? await c.guest(forged)
        try c.send(.send(.room(forged), text: "hi"))
        await c.close()
        if let origin = try? await RawWebSocket.connect(port: http, origin: "http://\u{1B}[31mevil", headers: ["X-Forwarded-For": "1.2.3.4\u{1B}[2J"]) {
            await origin.close()
        }
        process.terminate()
        let log = try await onOwnThread { () -> String in
            process.waitUntilExit()
            return String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        }
        #expect(!log.isEmpty)
        #expect(!log.contains("\u{1B}"), "an escape byte reached the log")
        #expect(!log.contains("\u{07}"))
        for line in log.split(separator: "\n") {
            #expect(!line.hasPrefix("2026-12-04T00:00:00"), "a forged line: \(line)")
        }
    }

    @Test("DNS rebinding: a page whose Host and Origin name some other host cannot open the WebSocket")
    func originIsOurs() async throws {
        let (s, http) = try await WebSocketTests.start()
        defer { s.removeData() }
        let rebound = try await RawWebSocket.connect(port: http, origin: "http://rebind.example:\(http)", host: "rebind.example:\(http)")
        #expect(rebound.status == 400, "the upgrade is declined")
        await rebound.close()
        for host in ["127.0.0.1:\(http)", "localhost:\(http)"] {
            let ours = try await RawWebSocket.connect(port: http, origin: "http://\(host)", host: host)
            #expect(ours.status == 101, "\(host)")
            await ours.close()
        }
        // An address literal is ours only when the request was sent to that address.
        let foreignAddress = try await RawWebSocket.connect(port: http, origin: "http://203.0.113.9", host: "127.0.0.1:\(http)")
        #expect(foreignAddress.status == 400)
        let sameAddress = try await RawWebSocket.connect(port: http, origin: "http://192.0.2.7:\(http)", host: "192.0.2.7:\(http)")
        #expect(sameAddress.status == 101)
        let loopbackPage = try await RawWebSocket.connect(port: http, origin: "http://localhost:3000", host: "203.0.113.9:\(http)")
        #expect(loopbackPage.status == 400, "a loopback page may not reach the server through another address")
        for socket in [foreignAddress, sameAddress, loopbackPage] { await socket.close() }
        await s.stop()
        // A configured public name is ours too.
        let (named, port) = try await WebSocketTests.start { $0.publicNames = ["chat.example.org"] }
        defer { named.removeData() }
        let page = try await RawWebSocket.connect(port: port, origin: "https://chat.example.org", host: "chat.example.org")
        #expect(page.status == 101)
        await page.close()
        await named.stop()
    }

    @Test("change_password: the current password is required; other sessions close, other tokens die, this one lives")
    func changePassword() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let a = try await s.connect()
        try await a.register("carol", password: TestServer.password)
        let tokenA = try #require(try await a.login("carol", password: TestServer.password, remember: true).token)
        _ = try await a.replay()
        let b = try await s.connect()
        let tokenB = try #require(try await b.login("carol", password: TestServer.password, remember: true).token)
        _ = try await b.replay()
        await expectError(.invalidCredentials) { try await a.request(.changePassword(current: "wrong one", password: "new password")) }
        await expectError(.passwordTooShort) { try await a.request(.changePassword(current: TestServer.password, password: "x")) }
        #expect(try await a.request(.changePassword(current: TestServer.password, password: "new password")).type == "ok")
        let closed = try await b.nextFrame("b closed") { $0.type == "error" }
        #expect(closed.code == "LOGGED_OUT")
        try await b.waitForClose()
        #expect(try await a.request(.ping).type == "pong")
        let c = try await s.connect()
        await expectError(.invalidCredentials) { try await c.login("carol", password: TestServer.password) }
        await expectError(.invalidCredentials) { try await c.login("carol", token: tokenB) }
        #expect(try await c.login("carol", token: tokenA).username == "carol")
        let d = try await s.connect()
        #expect(try await d.login("carol", password: "new password").username == "carol")
        for client in [a, c, d] { await client.close() }
        await s.stop()
    }

    @Test("sessions lists one's own sessions; end_session ends one and revokes its token; logout everywhere ends all")
    func sessionsAndLogoutEverywhere() async throws {
        let (s, http) = try await WebSocketTests.start()
        defer { s.removeData() }
        let a = try await s.connect()
        try await a.register("dave", password: TestServer.password)
        _ = try await a.login("dave", password: TestServer.password)
        _ = try await a.replay()
        let web = try await RawWebSocket.connect(port: http)
        try await web.send(#"{"type":"login","username":"dave","password":"\#(TestServer.password)","remember":true}"#)
        let welcome = try await web.next("welcome")
        let webToken = try #require(welcome["token"] as? String)
        let other = try await s.user("erin")
        let list = try await a.request(.sessions)
        let sessions = try #require(list.sessions)
        #expect(sessions.count == 2)
        #expect(Set(sessions.map(\.transport)) == ["native", "websocket"])
        #expect(sessions.filter(\.current).count == 1)
        #expect(sessions.allSatisfy { $0.address == "127.0.0.1" })
        let webSession = try #require(sessions.first { $0.transport == "websocket" })
        #expect(try await other.request(.sessions).sessions?.count == 1, "only one's own sessions")
        await expectError(.badRequest) { try await other.request(.endSession(webSession.session)) }
        #expect(try await a.request(.endSession(webSession.session)).type == "ok")
        let ended = try await web.next("error")
        #expect(ended["code"] as? String == "LOGGED_OUT")
        let c = try await s.connect()
        await expectError(.invalidCredentials) { try await c.login("dave", token: webToken) }
        // Logging out everywhere.
        let b = try await s.connect()
        let tokenB = try #require(try await b.login("dave", password: TestServer.password, remember: true).token)
        _ = try await b.replay()
        #expect(try await a.request(.logout(everywhere: true)).type == "ok")
        try await a.waitForClose()
        #expect(try await b.nextFrame { $0.type == "error" }.code == "LOGGED_OUT")
        try await b.waitForClose()
        let d = try await s.connect()
        await expectError(.invalidCredentials) { try await d.login("dave", token: tokenB) }
        for client in [c, d, other] { await client.close() }
        await web.close()
        await s.stop()
    }

    @Test("ending another session that shares this session's token (two tabs of one browser) leaves the token working")
    func endSessionSharingToken() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let setup = try await s.connect()
        try await setup.register("gil", password: TestServer.password)
        let token = try #require(try await setup.login("gil", password: TestServer.password, remember: true).token)
        await setup.close()
        let tab1 = try await s.connect()
        _ = try await tab1.login("gil", token: token)
        _ = try await tab1.replay()
        let tab2 = try await s.connect()
        _ = try await tab2.login("gil", token: token)
        _ = try await tab2.replay()
        let other = try #require(try await tab1.request(.sessions).sessions?.first { !$0.current })
        #expect(try await tab1.request(.endSession(other.session)).type == "ok")
        try await tab2.waitForClose()
        let again = try await s.connect()
        #expect(try await again.login("gil", token: token).username == "gil")
        for c in [tab1, again] { await c.close() }
        await s.stop()
    }

    @Test("revoke forgets a login token without logging in")
    func revoke() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let a = try await s.connect()
        try await a.register("fay", password: TestServer.password)
        let token = try #require(try await a.login("fay", password: TestServer.password, remember: true).token)
        await a.close()
        let b = try await s.connect()
        #expect(try await b.request(.revoke(token: token)).type == "ok")
        await expectError(.invalidCredentials) { try await b.login("fay", token: token) }
        await b.close()
        await s.stop()
    }

    @Test("a user is not told of their own arrival")
    func noOwnArrival() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let bob = try await s.user("bob")
        let (alice, _) = try await s.login("alice")
        // Bob hears of alice; alice's presence frames after the snapshot never name herself.
        #expect(try await bob.presence(of: "alice") == true)
        let mark = try await bob.send("after alice came")
        _ = try await alice.nextMessage { $0.messageId == mark.messageId }
        let pong = try await alice.request(.ping)
        #expect(pong.type == "pong")
        let frames = alice.bufferedFrames()
        let own = frames.filter { $0.type == "presence" && $0.snapshot != true && $0.changes?.contains { $0.username == "alice" } == true }
        #expect(own.isEmpty, "\(own)")
        await alice.close()
        await bob.close()
        await s.stop()
    }

    @Test("JSON is strict everywhere: raw control characters in any string are BAD_JSON")
    func strictJSON() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let c = try await s.connect()
        let prefix: [UInt8] = Array(#"{"type":"ping","x":"a"#.utf8)
        let suffix: [UInt8] = Array(#"b"}"#.utf8)
        let payloads: [[UInt8]] = [prefix + [0] + suffix, prefix + [10] + suffix, prefix + [9] + suffix]
        for payload in payloads {
            c.sendRaw(BadInputTests.framed(payload))
            let reply = try await c.nextFrame { $0.type == "error" || $0.type == "pong" }
            #expect(reply.code == "BAD_JSON", "\(String(decoding: payload, as: UTF8.self).debugDescription)")
        }
        #expect(try await c.request(.ping).type == "pong")
        await c.close()
        await s.stop()
    }

    @Test("the HTTP port answers a 40 KB head sent in one segment with 431")
    func oversizedHeadInOneSegment() async throws {
        let (s, http) = try await WebSocketTests.start()
        defer { s.removeData() }
        let socket = try await RawWebSocket.connectPlain(port: http)
        let filler = String(repeating: "a", count: 40 * 1024)
        try await socket.sendRaw(Array("GET / HTTP/1.1\r\nHost: 127.0.0.1:\(http)\r\nX-Filler: \(filler)\r\n\r\n".utf8))
        let bytes = try await socket.readToEnd()
        #expect(String(decoding: bytes.prefix(12), as: UTF8.self) == "HTTP/1.1 431")
        await s.stop()
    }

    @Test("WebSocket: a continuation with no message started, or an unmasked client frame, fails the connection with 1002")
    func webSocketProtocolErrors() async throws {
        let (s, http) = try await WebSocketTests.start()
        defer { s.removeData() }
        let stray = try await RawWebSocket.connect(port: http)
        _ = try await stray.next("hello")
        try await stray.send(opcode: 0, Array(#"{"type":"ping"}"#.utf8))
        #expect(try await stray.closeCode() == 1002)
        let unmasked = try await RawWebSocket.connect(port: http)
        _ = try await unmasked.next("hello")
        var frame = ByteBuffer()
        WebSocketHeader.write(opcode: 1, length: 15, masked: false, fin: true, into: &frame)
        frame.writeString(#"{"type":"ping"}"#)
        try await unmasked.sendRaw(Array(frame.readableBytesView))
        #expect(try await unmasked.closeCode() == 1002)
        await s.stop()
    }

    @Test("invite-only groups are listed only to their members and to those invited")
    func inviteOnlyGroupsAreHidden() async throws {
        let s = try await TestServer.start { $0.guests = true }
        defer { s.removeData() }
        let owner = try await s.user("olga")
        let invited = try await s.user("ivan")
        let stranger = try await s.user("sam")
        _ = try await owner.request(.group(.create(group: "secret", inviteOnly: true)))
        _ = try await owner.request(.group(.create(group: "open", inviteOnly: false)))
        _ = try await owner.request(.group(.invite(group: "secret", user: "ivan")))
        let guest = try await s.connect()
        _ = try await guest.guest("visitor")
        func names(_ c: ParleyClient) async throws -> [String] { try await c.request(.groups()).groups?.map(\.name) ?? [] }
        #expect(try await names(owner) == ["open", "secret"])
        #expect(try await names(invited) == ["open", "secret"])
        #expect(try await names(stranger) == ["open"])
        #expect(try await names(guest) == ["open"])
        for c in [owner, invited, stranger, guest] { await c.close() }
        await s.stop()
    }
}
