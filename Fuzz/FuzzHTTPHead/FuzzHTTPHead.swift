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
    let piece = Int(first % 64) + 1
    let channel = EmbeddedChannel()
    do {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
    } catch {
        preconditionFailure("\(error)")
    }
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
                _ = try? channel.finish()
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
            try channel.writeInbound(ByteBuffer(bytes: chunk))
            while let _ = try channel.readInbound(as: HTTPServerRequestPart.self) {}
        } catch {
            break  // NIO's parser refuses it: the server answers 400
        }
    }
    _ = try? channel.finish()
    return 0
}
