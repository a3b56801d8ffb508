import NIOCore
import NIOEmbedded
import NIOTestUtils
import ParleyWire
import Testing

@Suite("Frame decoder")
struct FrameDecoderTests {
    static func frame(_ text: String) -> ByteBuffer {
        Frame.make(Array(text.utf8), allocator: ByteBufferAllocator())
    }

    @Test("frames decode whether bytes arrive one at a time or merged (ByteToMessageDecoderVerifier)")
    func verifier() throws {
        let payloads = [#"{"type":"ping"}"#, "x", String(repeating: "y", count: 5000), #"{"type":"who","id":7}"#]
        let cases = payloads.map { (Self.frame($0), [ByteBuffer(string: $0)]) }
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: cases) {
            FrameDecoder(maxFrameSize: 64 * 1024)
        }
    }

    @Test("a length over the maximum is an error before the payload arrives")
    func tooLarge() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameSize: 1024)))
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(1025))
        #expect(throws: FrameError.tooLarge(length: 1025, limit: 1024)) { try channel.writeInbound(buffer) }
        _ = try? channel.finish()
    }

    @Test("a zero length is an error")
    func empty() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameSize: 1024)))
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(0))
        #expect(throws: FrameError.emptyFrame) { try channel.writeInbound(buffer) }
        _ = try? channel.finish()
    }

    @Test("a frame cut off by the end of the stream is dropped; complete ones before it are delivered")
    func truncated() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameSize: 1024)))
        var buffer = Self.frame("whole")
        buffer.writeInteger(UInt32(10))
        buffer.writeString("part")
        try channel.writeInbound(buffer)
        #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(string: "whole"))
        _ = try channel.finish()
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
    }
}
