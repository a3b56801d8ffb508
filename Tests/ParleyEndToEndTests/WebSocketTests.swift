import CompressNIO
import Foundation
import NIOCore
import NIOPosix
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyWire
import Testing

/// The HTTP listener without a browser: the static client, and the WebSocket carrying the
/// native protocol, over real sockets.
@Suite("End to end: HTTP and WebSocket", .timeLimit(.minutes(2)))
struct WebSocketTests {
    static func start(_ configure: @escaping (inout ServerConfiguration) -> Void = { _ in }) async throws -> (TestServer, Int) {
        let s = try await TestServer.start {
            $0.httpPort = 0
            configure(&$0)
        }
        return (s, try #require(s.server.port(of: "http")))
    }

    /// One plain HTTP/1.1 request; the response's status, headers (lower-cased names) and body.
    static func get(_ path: String, port: Int, headers: [String: String] = [:]) async throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        let socket = try await RawWebSocket.connectPlain(port: port)
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        try await socket.sendRaw(Array((request + "\r\n").utf8))
        let bytes = try await socket.readToEnd()
        let split = try #require(bytes.indices.dropLast(3).first { bytes[$0] == 13 && bytes[$0 + 1] == 10 && bytes[$0 + 2] == 13 && bytes[$0 + 3] == 10 })
        let head = String(decoding: bytes[..<split], as: UTF8.self).components(separatedBy: "\r\n")
        var fields: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let status = Int(head[0].split(separator: " ")[1]) ?? 0
        return (status, fields, Array(bytes[(split + 4)...]))
    }

    @Test("the client is served from memory: under 150 KB, a strict CSP, ETag revalidation and gzip")
    func staticClient() async throws {
        let (s, http) = try await Self.start()
        defer { s.removeData() }
        var total = 0
        for path in ["/index.html", "/app.js", "/app.css", "/favicon.svg"] {
            let plain = try await Self.get(path, port: http)
            #expect(plain.status == 200, "\(path)")
            total += plain.body.count
            let etag = try #require(plain.headers["etag"])
            #expect(plain.headers["content-encoding"] == nil)
            let again = try await Self.get(path, port: http, headers: ["If-None-Match": etag])
            #expect(again.status == 304 && again.body.isEmpty, "\(path) revalidates")
            let zipped = try await Self.get(path, port: http, headers: ["Accept-Encoding": "gzip, deflate, br"])
            if path != "/favicon.svg" {
                #expect(zipped.headers["content-encoding"] == "gzip", "\(path)")
                #expect(zipped.body.count < plain.body.count)
                var buffer = ByteBuffer(bytes: zipped.body)
                #expect(Array(try buffer.decompress(with: .gzip()).readableBytesView) == plain.body)
            }
        }
        #expect(total < 150_000, "the whole client is \(total) bytes")
        let index = try await Self.get("/", port: http)
        #expect(index.status == 200 && String(decoding: index.body, as: UTF8.self).contains("<script src=\"/app.js\""))
        let policy = try #require(index.headers["content-security-policy"])
        #expect(policy.contains("script-src 'self'") && policy.contains("default-src 'none'") && !policy.contains("unsafe"))
        #expect(try await Self.get("/nothing-here", port: http).status == 404)
        #expect(try await Self.get("/ws", port: http).status == 400, "a plain GET of /ws is told to use a WebSocket")
        await s.stop()
    }

    @Test("a WebSocket session is a peer of a native one: hello, login, messages both ways, presence")
    func peers() async throws {
        let (s, http) = try await Self.start()
        defer { s.removeData() }
        let native = try await s.user("Nat")
        let web = try await RawWebSocket.connect(port: http, origin: "http://127.0.0.1:\(http)")
        #expect(web.status == 101, "\(web.responseHead)")
        let welcome = try await web.login("Webb", extra: #","ack":true"#)
        #expect(welcome["result"] as? String == "LOGIN_SUCCESS" && welcome["username"] as? String == "Webb")
        _ = try await web.next("replay_end")
        #expect(try await native.presence(of: "Webb") == true)

        try native.send(.send(.room("general"), text: "from native"), id: .int(1))
        let got = try await web.next("the native message") { $0["type"] as? String == "message" && $0["text"] as? String == "from native" }
        #expect(got["from"] as? String == "Nat" && got["room"] as? String == "general")

        try await web.send(#"{"type":"send","id":7,"to":"nat","text":"from the web <b>"}"#)
        let ack = try await web.next("the acknowledgement") { $0["id"] as? Int == 7 }
        #expect(ack["type"] as? String == "message" && ack["to"] as? String == "Nat")
        let delivered = try await native.nextMessage { $0.text == "from the web <b>" }
        #expect(delivered.from == "Webb")

        // Many requests pipelined in one TCP write are each answered, in order.
        var batch: [UInt8] = []
        for i in 10..<40 { batch += RawWebSocket.masked(#"{"type":"ping","id":\#(i)}"#) }
        try await web.sendRaw(batch)
        for i in 10..<40 { #expect(try await web.next("pong")["id"] as? Int == i) }

        await web.close()
        try await native.wentOffline("Webb")
        await native.close()
        await s.stop()
    }

    @Test("ParleyClient speaks over the WebSocket as well (the bench's --websocket): a burst of sends, each acknowledged in order")
    func clientLibrary() async throws {
        let (s, http) = try await Self.start()
        defer { s.removeData() }
        let web = try await ParleyClient.connect(host: "127.0.0.1", port: http, webSocket: true)
        try await web.register("Lib", password: TestServer.password)
        try await web.login("Lib", password: TestServer.password)
        _ = try await web.replay()
        let native = try await s.user("Nat")
        for i in 1...200 { try web.send(.send(.room("general"), text: "burst \(i)"), id: .int(Int64(i))) }
        for i in 1...200 {
            let ack = try await web.nextFrame("acknowledgement \(i)") { $0.id != nil }
            #expect(ack.id == .int(Int64(i)) && ack.type == "message")
        }
        for i in 1...200 { #expect(try await native.nextMessage { $0.from == "Lib" }.text == "burst \(i)") }
        await web.close()
        await native.close()
        await s.stop()
    }

    @Test("bad frames: binary and bad JSON are answered and the connection stays; too large is FRAME_TOO_LARGE and a close (1009)")
    func badFrames() async throws {
        let (s, http) = try await Self.start { $0.limits.maxFrameSize = 4096; $0.limits.maxTextBytes = 2048 }
        defer { s.removeData() }
        let web = try await RawWebSocket.connect(port: http)
        _ = try await web.next("hello")
        try await web.send(opcode: 2, [1, 2, 3])
        let binary = try await web.next("error")
        #expect(binary["code"] as? String == "BAD_REQUEST")
        try await web.send("{not json")
        #expect(try await web.next("error")["code"] as? String == "BAD_JSON")
        try await web.send(opcode: 1, [0x7b, 0xff, 0x7d])
        #expect(try await web.next("error")["code"] as? String == "BAD_UTF8")
        try await web.send("")
        #expect(try await web.next("error")["code"] as? String == "EMPTY_FRAME")
        // Fragments are joined into one message.
        try await web.send(opcode: 1, Array(#"{"type":"ping","#.utf8), fin: false)
        try await web.send(opcode: 0, Array(#""id":3}"#.utf8))
        #expect(try await web.next("pong")["id"] as? Int == 3)

        // One byte over the limit, in one frame: the error, then a close with 1009.
        try await web.send(Array(repeating: 0x20, count: 4097))
        let tooLarge = try await web.next("error")
        #expect(tooLarge["code"] as? String == "FRAME_TOO_LARGE")
        #expect(try await web.closeCode() == 1009)
        try await eventually("the connection to close") { !web.isActive }

        // Over the limit in fragments.
        let fragments = try await RawWebSocket.connect(port: http)
        _ = try await fragments.next("hello")
        for i in 0..<5 { try await fragments.send(opcode: i == 0 ? 0x1 : 0x0, Array(repeating: 0x20, count: 1000), fin: false) }
        #expect(try await fragments.next("error")["code"] as? String == "FRAME_TOO_LARGE")

        // A header announcing 1 GB: refused from the header, nothing buffered.
        let huge = try await RawWebSocket.connect(port: http)
        _ = try await huge.next("hello")
        try await huge.sendRaw([0x81, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4])
        #expect(try await huge.closeCode() == 1009)

        // The server is fine.
        let after = try await RawWebSocket.connect(port: http)
        try await after.login("Still")
        await after.close()
        await s.stop()
    }

    @Test("WebSocket connections count against the connection limits: over one, 503 with the reason before any upgrade")
    func connectionLimit() async throws {
        let (s, http) = try await Self.start { $0.maxConnectionsPerAddress = 2 }
        defer { s.removeData() }
        let native = try await s.connect()
        let first = try await RawWebSocket.connect(port: http)
        _ = try await first.next("hello")
        let refused = try await RawWebSocket.connectPlain(port: http)
        let answer = String(decoding: try await refused.readToEnd(), as: UTF8.self)
        #expect(answer.hasPrefix("HTTP/1.1 503"))
        #expect(answer.contains("too many connections from your address"))
        await first.close()
        try await eventually("the first WebSocket to be counted out") { s.server.connectionCount == 1 }
        let again = try await RawWebSocket.connect(port: http)
        #expect(try await again.next("hello")["type"] as? String == "hello")
        for socket in [refused, again] { await socket.close() }
        await native.close()
        await s.stop()
    }

    @Test("a page from another origin cannot open the WebSocket; the server's own and allowed origins can")
    func origin() async throws {
        let (s, http) = try await Self.start { $0.allowedOrigins = ["https://chat.example.com"] }
        defer { s.removeData() }
        let foreign = try await RawWebSocket.connect(port: http, origin: "http://evil.example")
        #expect(foreign.status == 400, "\(foreign.responseHead)")
        let spoofed = try await RawWebSocket.connect(port: http, origin: "http://127.0.0.1:\(http).evil.example")
        #expect(spoofed.status == 400)
        let nullOrigin = try await RawWebSocket.connect(port: http, origin: "null")
        #expect(nullOrigin.status == 400)
        let own = try await RawWebSocket.connect(port: http, origin: "http://127.0.0.1:\(http)")
        #expect(own.status == 101)
        #expect(try await own.next("hello")["server"] as? String == "parley")
        let named = try await RawWebSocket.connect(port: http, origin: "https://chat.example.com", host: "chat.example.com")
        #expect(named.status == 101)
        for socket in [foreign, spoofed, nullOrigin, own, named] { await socket.close() }
        await s.stop()
    }

    @Test("a WebSocket reader that stops reading is cut off; a WebSocket reader beside it gets everything")
    func slowReader() async throws {
        let (s, http) = try await Self.start { $0.limits.maxOutboxBytes = 64 * 1024 }
        defer { s.removeData() }
        let sender = try await s.user("Sender")
        let reader = try await RawWebSocket.connect(port: http)
        try await reader.login("Reader")
        _ = try await reader.next("replay_end")
        let lazy = try await RawWebSocket.connect(port: http, receiveBuffer: 4096)
        try await lazy.login("Lazy")
        _ = try await lazy.next("replay_end")
        try await lazy.channel.setOption(ChannelOptions.autoRead, value: false).get()

        let text = String(repeating: "z", count: 3000)
        let count = 2000
        for i in 0..<count { try sender.send(.send(.room("general"), text: text), id: .int(Int64(i))) }
        _ = try await sender.nextFrame(timeout: 60, "the last acknowledgement") { $0.id == .int(Int64(count - 1)) }
        var received = 0
        while received < count {
            _ = try await reader.next(timeout: 30, "message \(received)") { $0["type"] as? String == "message" && $0["from"] as? String == "Sender" }
            received += 1
        }
        #expect(received == count)
        try await eventually("the slow WebSocket to be dropped", timeout: 20) { s.server.connectionCount == 2 }
        await lazy.close()
        await reader.close()
        await sender.close()
        await s.stop()
    }

    @Test("the login throttle keys on the client's address: X-Forwarded-For only from a trusted proxy")
    func trustedProxy() async throws {
        for trusted in [true, false] {
            let (s, http) = try await Self.start {
                $0.trustedProxies = trusted ? ["127.0.0.1"] : []
                $0.loginBackoff = 30
            }
            // Five failures (unknown names, so only the address is counted) from 10.0.0.1.
            for i in 0..<5 {
                let socket = try await RawWebSocket.connect(port: http, headers: ["X-Forwarded-For": "203.0.113.9, 10.0.0.1"])
                _ = try await socket.next("hello")
                try await socket.send(#"{"type":"login","id":1,"username":"nobody\#(i)","password":"wrong password"}"#)
                #expect(try await socket.next("error")["code"] as? String == "INVALID_CREDENTIALS")
                await socket.close()
            }
            func attempt(from address: String) async throws -> String? {
                let socket = try await RawWebSocket.connect(port: http, headers: ["X-Forwarded-For": address])
                _ = try await socket.next("hello")
                try await socket.send(#"{"type":"login","id":1,"username":"someone","password":"wrong password"}"#)
                defer { Task { await socket.close() } }
                return try await socket.next("error")["code"] as? String
            }
            #expect(try await attempt(from: "10.0.0.1") == "RATE_LIMITED")
            // Another client behind the proxy is not held back, unless the proxy is not trusted
            // (then everyone is the proxy's address).
            #expect(try await attempt(from: "10.0.0.2") == (trusted ? "INVALID_CREDENTIALS" : "RATE_LIMITED"))
            await s.stop()
            s.removeData()
        }
    }

    @Test("a connection that does not finish its request head within the frame timeout is closed; upgraded ones stay")
    func slowHead() async throws {
        let (s, http) = try await Self.start { $0.frameTimeout = 1 }
        defer { s.removeData() }
        let web = try await RawWebSocket.connect(port: http)
        try await web.login("Stays")
        let silent = try await RawWebSocket.connectPlain(port: http)
        let trickle = try await RawWebSocket.connectPlain(port: http)
        try await trickle.sendRaw(Array("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n".utf8))
        #expect(try await Self.get("/", port: http).status == 200, "others are served meanwhile")
        try await eventually("the silent and the slow connection to be closed", timeout: 10) { !silent.isActive && !trickle.isActive }
        // The WebSocket, open for longer than the deadline, still works.
        try await web.send(#"{"type":"ping","id":9}"#)
        #expect(try await web.next("pong")["id"] as? Int == 9)
        await web.close()
        await s.stop()
    }

    @Test("a WebSocket client flooding sends without reading slows only itself; others talk on")
    func flood() async throws {
        let (s, http) = try await Self.start { $0.limits.maxOutboxBytes = 256 * 1024 }
        defer { s.removeData() }
        let flooder = try await RawWebSocket.connect(port: http, receiveBuffer: 4096)
        try await flooder.login("Flooder")
        _ = try await flooder.next("replay_end")
        try await flooder.channel.setOption(ChannelOptions.autoRead, value: false).get()
        let (bob, _) = try await s.login("bob")
        let (carol, _) = try await s.login("carol")
        // 5,000 sends in writes of 500, as fast as TCP takes them.
        let flood = Task {
            for batch in 0..<10 {
                var bytes: [UInt8] = []
                for i in 0..<500 { bytes += RawWebSocket.masked(#"{"type":"send","id":\#(batch * 500 + i),"room":"general","text":"f"}"#) }
                try? await flooder.sendRaw(bytes)
            }
        }
        for i in 0..<20 {
            let sent = try await bob.send("to carol \(i)", to: "carol", timeout: 30)
            _ = try await carol.nextMessage(timeout: 30) { $0.messageId == sent.messageId }
        }
        #expect(bob.isActive && carol.isActive)
        flood.cancel()
        await flooder.close()
        try await eventually("the flooder's connection to be gone") { s.server.connectionCount == 2 }
        for c in [bob, carol] { await c.close() }
        await s.stop()
    }

    @Test("the HTTP port survives garbage and oversized headers, and keeps serving")
    func httpGarbage() async throws {
        let (s, http) = try await Self.start()
        defer { s.removeData() }
        let garbage = try await RawWebSocket.connectPlain(port: http)
        try await garbage.sendRaw((0..<4096).map { UInt8(($0 * 7 + 3) % 256) })
        let answer = try await garbage.readToEnd(timeout: 5)
        #expect(String(decoding: answer.prefix(12), as: UTF8.self) == "HTTP/1.1 400", "\(answer.prefix(40))")
        let huge = try await RawWebSocket.connectPlain(port: http)
        try await huge.sendRaw(Array("GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 200_000))\r\n\r\n".utf8))
        let refused = try await huge.readToEnd(timeout: 5)
        #expect(String(decoding: refused.prefix(12), as: UTF8.self) == "HTTP/1.1 431", "an oversized head is refused")
        #expect(try await Self.get("/", port: http).status == 200)
        let web = try await RawWebSocket.connect(port: http)
        #expect(try await web.next("hello")["type"] as? String == "hello")
        await web.close()
        await s.stop()
    }

    @Test("at shutdown a WebSocket client gets the notice and a close (1001)")
    func shutdown() async throws {
        let (s, http) = try await Self.start()
        defer { s.removeData() }
        let web = try await RawWebSocket.connect(port: http)
        try await web.login("Leaving")
        _ = try await web.next("replay_end")
        async let stopped: Void = s.stop()
        let notice = try await web.next("shutdown")
        #expect(notice["message"] as? String == "the server is shutting down")
        #expect(try await web.closeCode() == 1001)
        await stopped
    }
}

extension RawWebSocket {
    /// A masked text frame's bytes.
    static func masked(_ text: String) -> [UInt8] { masked(Array(text.utf8)) }
}
