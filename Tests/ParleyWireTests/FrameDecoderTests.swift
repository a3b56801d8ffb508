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

@Suite("Frame deadline")
struct FrameDeadlineTests {
    /// Records errors that reach the end of the pipeline.
    final class ErrorRecorder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var errors: [any Error] = []
        func errorCaught(context: ChannelHandlerContext, error: any Error) { errors.append(error) }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.fireChannelRead(data) }
    }

    @Test("bytes pass unchanged; only a frame left unfinished past the limit is an error")
    func deadline() throws {
        let loop = EmbeddedEventLoop()
        let recorder = ErrorRecorder()
        let channel = EmbeddedChannel(handlers: [FrameDeadline(limit: .seconds(1)), recorder], loop: loop)
        var whole = ByteBuffer()
        whole.writeInteger(UInt32(2))
        whole.writeString("hi")
        try channel.writeInbound(whole.getSlice(at: 0, length: 3)!)
        loop.advanceTime(by: .milliseconds(500))
        try channel.writeInbound(whole.getSlice(at: 3, length: 3)!)
        loop.advanceTime(by: .seconds(2))
        #expect(recorder.errors.isEmpty, "completed in time")
        #expect(try channel.readInbound(as: ByteBuffer.self)?.readableBytes == 3)
        #expect(try channel.readInbound(as: ByteBuffer.self)?.readableBytes == 3)
        var partial = ByteBuffer()
        partial.writeInteger(UInt32(100))
        partial.writeString("only a little")
        try channel.writeInbound(partial)
        loop.advanceTime(by: .milliseconds(999))
        #expect(recorder.errors.isEmpty)
        loop.advanceTime(by: .milliseconds(2))
        #expect(recorder.errors.count == 1)
        #expect(recorder.errors.first as? FrameError == .timedOut(limit: .seconds(1)))
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
}

@Suite("Frame deadline while the server is not reading")
struct FrameDeadlinePauseTests {
    @Test("the clock stops while reading is paused and starts afresh when it resumes")
    func paused() throws {
        let loop = EmbeddedEventLoop()
        let recorder = FrameDeadlineTests.ErrorRecorder()
        let channel = EmbeddedChannel(handlers: [FrameDeadline(limit: .seconds(1)), recorder], loop: loop)
        var partial = ByteBuffer()
        partial.writeInteger(UInt32(100))
        try channel.writeInbound(partial)
        channel.pipeline.fireUserInboundEventTriggered(FrameDeadline.Reading.paused)
        loop.advanceTime(by: .seconds(5))
        #expect(recorder.errors.isEmpty, "no time counts while the server does not read")
        channel.pipeline.fireUserInboundEventTriggered(FrameDeadline.Reading.resumed)
        loop.advanceTime(by: .milliseconds(900))
        #expect(recorder.errors.isEmpty)
        loop.advanceTime(by: .milliseconds(200))
        #expect(recorder.errors.count == 1)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
}

@Suite("Frame deadline across frames")
struct FrameDeadlineStreamTests {
    @Test("each frame gets its own limit, even when every read ends inside a frame")
    func eachFrame() throws {
        let loop = EmbeddedEventLoop()
        let recorder = FrameDeadlineTests.ErrorRecorder()
        let channel = EmbeddedChannel(handlers: [FrameDeadline(limit: .seconds(1)), recorder], loop: loop)
        // Frames of 10 bytes, read in pieces of 7, 0.4 s apart: a frame spans at most three
        // reads (0.8 s), and many reads end inside a frame.
        var stream = ByteBuffer()
        for _ in 0..<20 {
            stream.writeInteger(UInt32(6))
            stream.writeString("abcdef")
        }
        while stream.readableBytes > 0 {
            try channel.writeInbound(stream.readSlice(length: min(7, stream.readableBytes))!)
            loop.advanceTime(by: .milliseconds(400))
        }
        #expect(recorder.errors.isEmpty, "every frame finished within a second of its first byte")
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
}
