import NIOCore
import ParleyWire

/// libFuzzer target: a native connection's input. The bytes are cut into frames by the server's
/// `FrameDecoder` (fed in pieces whose sizes the input's first byte chooses, as reads would
/// deliver them), and each frame's payload goes through `RequestParser`, as the server does.
/// Checks that no frame exceeds the limit and that a request that parses survives encoding and
/// parsing again unchanged.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNative(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: start, count: count)
    guard let first = bytes.first else { return 0 }
    // Reads of 1–64 bytes, or of 256–16,384 bytes when bit 6 is set.
    let piece = (Int(first & 0x3F) + 1) * (first & 0x40 != 0 ? 256 : 1)
    let maxFrame = 4096
    var buffer = ByteBuffer()
    var offset = 1
    while offset < bytes.count {
        let end = min(offset + piece, bytes.count)
        buffer.writeBytes(bytes[offset..<end])
        offset = end
        do {
            while let payload = try FrameDecoder.next(from: &buffer, maxFrameSize: maxFrame) {
                precondition(payload.readableBytes > 0 && payload.readableBytes <= maxFrame)
                check(payload)
            }
        } catch {
            return 0  // the server closes the connection here
        }
    }
    return 0
}

/// Parses one request; one that parses is encoded and parsed again to the same request.
func check(_ payload: ByteBuffer) {
    guard case .success(let envelope) = RequestParser.parse(payload) else { return }
    guard let encoded = try? JSONEncoderForFuzzing.encode(envelope) else { return }
    guard case .success(let again) = RequestParser.parse(ByteBuffer(bytes: encoded)) else {
        preconditionFailure("a request that parsed did not parse again after encoding")
    }
    precondition(again == envelope, "a request changed in a round trip")
}
