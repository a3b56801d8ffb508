import Foundation
import NIOCore
import ParleyWire

/// Lets the native-protocol client speak over a WebSocket (`/ws` of `parley serve`'s HTTP port):
/// it asks for the upgrade when the connection opens, then hands each text message from the
/// server (the JSON of one frame) to the handler above it, and turns each native frame written
/// by that handler into a masked text message. Pings are answered; a close
/// from the server closes the connection.
/// Thread safety: a `ChannelHandler`; used on its channel's event loop only.
final class WebSocketFraming: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct UpgradeRefused: Error, CustomStringConvertible {
        var status: String
        var description: String { "the server refused the WebSocket upgrade: \(status)" }
    }

    private let host: String
    private let path: String
    private var upgraded = false
    private var received: ByteBuffer?
    private var message: ByteBuffer?

    init(host: String, path: String = "/ws") {
        self.host = host
        self.path = path
    }

    func channelActive(context: ChannelHandlerContext) {
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let request = "GET \(path) HTTP/1.1\r\nHost: \(host)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: request)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if received == nil { received = incoming } else { received!.writeBuffer(&incoming) }
        if !upgraded {
            guard let view = received?.readableBytesView, let end = view.firstRange(of: [13, 10, 13, 10]) else { return }
            let head = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
            received!.moveReaderIndex(to: end.upperBound)
            let status = head.prefix { $0 != "\r" }
            guard status.split(separator: " ").dropFirst().first == "101" else {
                context.fireErrorCaught(UpgradeRefused(status: String(status)))
                context.close(promise: nil)
                return
            }
            upgraded = true
        }
        while let frame = nextFrame() {
            switch frame.opcode {
            case 0x1 where frame.fin:
                // A whole message: its payload, as it lies in the received bytes.
                message = nil
                context.fireChannelRead(wrapInboundOut(frame.payload))
            case 0x1, 0x0:
                if frame.opcode == 0x1 { message = context.channel.allocator.buffer(capacity: frame.payload.readableBytes) }
                var payload = frame.payload
                message?.writeBuffer(&payload)
                if frame.fin, let whole = message {
                    message = nil
                    context.fireChannelRead(wrapInboundOut(whole))
                }
            case 0x9:
                context.writeAndFlush(wrapOutboundOut(Self.frame(opcode: 0xA, payload: frame.payload, allocator: context.channel.allocator)), promise: nil)
            case 0x8:
                context.close(promise: nil)
                return
            default:
                break
            }
        }
        if received?.readableBytes == 0 { received = nil } else { received?.discardReadBytes() }
    }

    /// One whole frame off the front of what was received, if there is one.
    private func nextFrame() -> (opcode: UInt8, fin: Bool, payload: ByteBuffer)? {
        guard var buffer = received, let first: UInt8 = buffer.readInteger(), let second: UInt8 = buffer.readInteger() else { return nil }
        var length = Int(second & 0x7f)
        if length == 126 {
            guard let extended: UInt16 = buffer.readInteger() else { return nil }
            length = Int(extended)
        } else if length == 127 {
            guard let extended: UInt64 = buffer.readInteger() else { return nil }
            length = Int(extended)
        }
        guard let payload = buffer.readSlice(length: length) else { return nil }
        received = buffer
        return (first & 0x0f, first & 0x80 != 0, payload)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // (Written before the 101 arrives, these wait in the server's upgrade handler.)
        var native = unwrapOutboundIn(data)
        var out = context.channel.allocator.buffer(capacity: native.readableBytes + 16)
        while let length: UInt32 = native.readInteger(), let payload = native.readSlice(length: Int(length)) {
            var framed = Self.frame(opcode: 0x1, payload: payload, allocator: context.channel.allocator)
            out.writeBuffer(&framed)
        }
        context.write(wrapOutboundOut(out), promise: promise)
    }

    /// A masked, final client frame.
    static func frame(opcode: UInt8, payload: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        let count = payload.readableBytes
        var buffer = allocator.buffer(capacity: count + 14)
        WebSocketHeader.write(opcode: opcode, length: count, masked: true, into: &buffer)
        let mask = UInt32.random(in: 0...UInt32.max)
        buffer.writeInteger(mask)
        let maskBytes = [UInt8(mask >> 24), UInt8(mask >> 16 & 0xff), UInt8(mask >> 8 & 0xff), UInt8(mask & 0xff)]
        var index = 0
        for byte in payload.readableBytesView {
            buffer.writeInteger(byte ^ maskBytes[index & 3])
            index += 1
        }
        return buffer
    }
}
