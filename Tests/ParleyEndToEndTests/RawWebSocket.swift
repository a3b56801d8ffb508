import Foundation
import NIOCore
import NIOPosix
import ParleyCore
import ParleyWire

/// A deliberately simple WebSocket client over a real TCP socket, for tests that need to send
/// what a browser would not (binary, oversized or fragmented frames, a foreign Origin) and to read
/// exactly what the server sent (close codes included).
/// Thread safety: `Sendable`; received bytes are behind a lock.
final class RawWebSocket: Sendable {
    let channel: any Channel
    let status: Int
    let responseHead: String
    private let inbox: Inbox

    /// The bytes of one frame, masked as a client must.
    static func masked(opcode: UInt8 = 1, _ payload: [UInt8], fin: Bool = true) -> [UInt8] {
        var buffer = ByteBuffer()
        WebSocketHeader.write(opcode: opcode, length: payload.count, masked: true, fin: fin, into: &buffer)
        let mask: [UInt8] = (0..<4).map { _ in UInt8.random(in: 0...255) }
        buffer.writeBytes(mask)
        buffer.writeBytes(payload.enumerated().map { $0.element ^ mask[$0.offset % 4] })
        return Array(buffer.readableBytesView)
    }

    struct Frame: Sendable {
        var opcode: UInt8
        var payload: [UInt8]
        var text: String { String(decoding: payload, as: UTF8.self) }
        /// For a close frame: its status code.
        var closeCode: UInt16? { opcode == 8 && payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil }
    }

    struct Closed: Error, CustomStringConvertible {
        var code: UInt16?
        var description: String { "the WebSocket closed (\(code.map(String.init) ?? "no close frame"))" }
    }

    final class Inbox: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let bytes = Locked<[UInt8]>([])
        let inactive = Locked(false)
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            bytes.withLock { $0 += buffer.readableBytesView }
        }
        func channelInactive(context: ChannelHandlerContext) { inactive.withLock { $0 = true } }
    }

    private init(channel: any Channel, status: Int, head: String, inbox: Inbox) {
        self.channel = channel
        self.status = status
        self.responseHead = head
        self.inbox = inbox
    }

    /// Connects and asks for an upgrade of `path`; returns whatever the server answered.
    /// - Parameters:
    ///   - origin: the `Origin` header, or none.
    ///   - host: the `Host` header (default `127.0.0.1:port`).
    static func connect(port: Int, path: String = "/ws", origin: String? = nil, host: String? = nil, headers: [String: String] = [:],
                        receiveBuffer: Int? = nil) async throws -> RawWebSocket {
        let (channel, inbox) = try await open(port: port, receiveBuffer: receiveBuffer)
        var request = "GET \(path) HTTP/1.1\r\nHost: \(host ?? "127.0.0.1:\(port)")\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        if let origin { request += "Origin: \(origin)\r\n" }
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        try await channel.writeAndFlush(ByteBuffer(string: request))
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            let head: String? = inbox.bytes.withLock { bytes in
                guard let end = bytes.indices.dropLast(3).first(where: { bytes[$0] == 13 && bytes[$0 + 1] == 10 && bytes[$0 + 2] == 13 && bytes[$0 + 3] == 10 }) else { return nil }
                let head = String(decoding: bytes[..<end], as: UTF8.self)
                bytes.removeFirst(end + 4)
                return head
            }
            if let head {
                let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
                return RawWebSocket(channel: channel, status: status, head: head, inbox: inbox)
            }
            if ContinuousClock.now > deadline || inbox.inactive.withLock({ $0 }) {
                throw Closed(code: nil)
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    private static func open(port: Int, receiveBuffer: Int?) async throws -> (any Channel, Inbox) {
        let inbox = Inbox()
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(inbox) } }
        if let receiveBuffer {
            bootstrap = bootstrap.channelOption(ChannelOptions.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBuffer))
        }
        return (try await bootstrap.connect(host: "127.0.0.1", port: port).get(), inbox)
    }

    /// A plain TCP connection (for HTTP requests written by hand).
    static func connectPlain(port: Int) async throws -> RawWebSocket {
        let (channel, inbox) = try await open(port: port, receiveBuffer: nil)
        return RawWebSocket(channel: channel, status: 0, head: "", inbox: inbox)
    }

    /// Everything received until the server closes the connection.
    func readToEnd(timeout: Double = 10) async throws -> [UInt8] {
        try await eventually("the server to close", timeout: timeout) { !isActive }
        return inbox.bytes.withLock { $0 }
    }

    /// Sends one frame, masked as a client must.
    func send(opcode: UInt8 = 1, _ payload: [UInt8], fin: Bool = true) async throws {
        try await sendRaw(Self.masked(opcode: opcode, payload, fin: fin))
    }

    func send(_ text: String) async throws { try await send(Array(text.utf8)) }

    /// Writes bytes as they are (for a frame header that promises more than will come).
    func sendRaw(_ bytes: [UInt8]) async throws { try await channel.writeAndFlush(ByteBuffer(bytes: bytes)) }

    /// The next whole frame from the server.
    func nextFrame(timeout: Double = 10) async throws -> Frame {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while true {
            if let frame = inbox.bytes.withLock({ Self.parse(&$0) }) { return frame }
            if inbox.inactive.withLock({ $0 }) { throw Closed(code: nil) }
            if ContinuousClock.now > deadline { throw ParleyClientTimeout(what: "a WebSocket frame") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// The next text message that is a JSON object satisfying `predicate`; a close frame throws.
    func next(timeout: Double = 10, _ what: String = "a frame", where predicate: ([String: Any]) -> Bool = { _ in true }) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while true {
            let remaining = Double((deadline - ContinuousClock.now).components.seconds) + 0.001
            guard remaining > 0 else { throw ParleyClientTimeout(what: what) }
            let frame = try await nextFrame(timeout: remaining)
            if frame.opcode == 8 { throw Closed(code: frame.closeCode) }
            guard frame.opcode == 1,
                  let object = try? JSONSerialization.jsonObject(with: Data(frame.payload)) as? [String: Any] else { continue }
            if predicate(object) { return object }
        }
    }

    /// The next frame of `type`.
    func next(_ type: String, timeout: Double = 10) async throws -> [String: Any] {
        try await next(timeout: timeout, type) { $0["type"] as? String == type }
    }

    /// Reads frames until the close frame, and returns its code.
    func closeCode(timeout: Double = 10) async throws -> UInt16? {
        while true {
            let frame = try await nextFrame(timeout: timeout)
            if frame.opcode == 8 { return frame.closeCode }
        }
    }

    /// Registers (unless told not to) and logs in `name`, returning the welcome.
    @discardableResult
    func login(_ name: String, register: Bool = true, extra: String = "") async throws -> [String: Any] {
        _ = try await next("hello")
        if register {
            try await send(#"{"type":"register","id":1,"username":"\#(name)","password":"\#(TestServerPassword.value)"}"#)
            _ = try await next("registered")
        }
        try await send(#"{"type":"login","id":2,"username":"\#(name)","password":"\#(TestServerPassword.value)"\#(extra)}"#)
        return try await next("welcome")
    }

    var isActive: Bool { !inbox.inactive.withLock { $0 } }

    func close() async { try? await channel.close() }

    /// Takes one whole frame off the front of `bytes`, if there is one.
    static func parse(_ bytes: inout [UInt8]) -> Frame? {
        guard bytes.count >= 2 else { return nil }
        var length = Int(bytes[1] & 0x7f)
        var offset = 2
        if length == 126 {
            guard bytes.count >= 4 else { return nil }
            length = Int(bytes[2]) << 8 | Int(bytes[3]); offset = 4
        } else if length == 127 {
            guard bytes.count >= 10 else { return nil }
            length = bytes[2..<10].reduce(0) { $0 << 8 | Int($1) }; offset = 10
        }
        guard bytes.count >= offset + length else { return nil }
        let frame = Frame(opcode: bytes[0] & 0x0f, payload: Array(bytes[offset..<offset + length]))
        bytes.removeFirst(offset + length)
        return frame
    }
}

struct ParleyClientTimeout: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

enum TestServerPassword { static let value = TestServer.password }
