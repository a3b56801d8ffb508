import NIOCore
import NIOEmbedded
import NIOHTTP1
import ParleyWire

/// libFuzzer target: the first bytes of an HTTP connection, as the server's HTTP port handles
/// them: `HTTPHeadScanner` (400 for what cannot start a request, 431 for a head over 32 KiB,
/// however it is cut into reads) in front of NIO's HTTP/1 request decoder. Checks that a head
/// the scanner calls complete ends where it says and within the limit.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPHead(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: start, count: count)
    guard let first = bytes.first else { return 0 }
    // Reads of 1–64 bytes, or of 256–16,384 bytes when bit 6 is set.
    let piece = (Int(first & 0x3F) + 1) * (first & 0x40 != 0 ? 256 : 1)
    // NIO's decoder is set up only for input the scanner passes on (most random input is
    // refused at once, and a channel per input would dominate the time).
    var decoder: EmbeddedChannel?
    var scanner = HTTPHeadScanner()
    var passed: [UInt8] = []
    var offset = 1
    var scanning = true
    while offset < bytes.count {
        let end = min(offset + piece, bytes.count)
        let chunk = bytes[offset..<end]
        offset = end
        if scanning {
            switch scanner.feed(chunk) {
            case .refuse:
                _ = try? decoder?.finish()
                return 0
            case .more:
                passed += chunk
            case .complete(let length):
                passed += chunk
                precondition(length <= HTTPHeadScanner.maxHead && length >= 4 && length <= passed.count)
                precondition(Array(passed[(length - 4)..<length]) == [13, 10, 13, 10], "the head does not end where the scanner says")
                scanning = false
            }
        }
        do {
            if decoder == nil {
                let channel = EmbeddedChannel()
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
                decoder = channel
            }
            try decoder!.writeInbound(ByteBuffer(bytes: chunk))
            while let _ = try decoder!.readInbound(as: HTTPServerRequestPart.self) {}
        } catch {
            break  // NIO's parser refuses it: the server answers 400
        }
    }
    _ = try? decoder?.finish()
    return 0
}
