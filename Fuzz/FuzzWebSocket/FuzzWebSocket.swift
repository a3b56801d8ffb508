import NIOCore
import NIOEmbedded
import NIOWebSocket
import ParleyWire

/// libFuzzer target: a WebSocket connection's input after the upgrade, through the server's
/// message path: NIO's frame decoder (as the upgrade installs it, with a 128 KiB frame limit),
/// the RFC 6455 rules the server adds (`WebSocketFrameRules`), the joining of fragments within
/// the message limit (`WebSocketMessageAssembler`), and `RequestParser` for each text message.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebSocket(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: start, count: count)
    guard let first = bytes.first else { return 0 }
    // Reads of 1–64 bytes, or of 256–16,384 bytes when bit 6 is set.
    let piece = (Int(first & 0x3F) + 1) * (first & 0x40 != 0 ? 256 : 1)
    let maxMessage = 4096
    let channel = EmbeddedChannel()
    let collector = Collector()
    do {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 2 * maxMessage)))
        try channel.pipeline.syncOperations.addHandler(collector)
    } catch {
        preconditionFailure("\(error)")
    }
    var rules = WebSocketFrameRules()
    var assembler = WebSocketMessageAssembler(maxMessageSize: maxMessage)
    var offset = 1
    loop: while offset < bytes.count {
        let end = min(offset + piece, bytes.count)
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes[offset..<end]))
        } catch {
            break  // a frame the decoder refuses: the connection fails
        }
        offset = end
        for frame in collector.take() {
            if rules.check(opcode: UInt8(webSocketOpcode: frame.opcode), fin: frame.fin, masked: frame.maskKey != nil) != nil { break loop }
            guard !frame.opcode.isControlOpcode else { continue }
            switch assembler.receive(opcode: UInt8(webSocketOpcode: frame.opcode), fin: frame.fin, payload: frame.unmaskedData) {
            case .tooLarge: break loop
            case .text(let message):
                precondition(message.readableBytes <= maxMessage)
                _ = RequestParser.parse(message)
            case .incomplete, .empty, .binary:
                break
            }
        }
    }
    _ = try? channel.finish()
    return 0
}

/// Gathers the decoded frames.
final class Collector: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    private var frames: [WebSocketFrame] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        frames.append(unwrapInboundIn(data))
    }

    func take() -> [WebSocketFrame] {
        defer { frames = [] }
        return frames
    }
}
