/// Watches the first bytes of an HTTP connection until its first request head is complete: what
/// cannot start a request (anything but an upper-case method token and a space) is refused 400,
/// a head over ``maxHead`` bytes 431, whether it arrives in pieces or in one segment.
///
/// A plain state machine fed bytes as they arrive (the server's `FirstRequestDeadline` performs
/// what it decides; the fuzz target `FuzzHTTPHead` feeds it arbitrary input).
/// Thread safety: a value type; used by one connection on its loop.
public struct HTTPHeadScanner: Sendable {
    /// What to do with the bytes just fed.
    public enum Verdict: Equatable, Sendable {
        /// Pass them on; the head is not complete yet.
        case more
        /// Pass them on; the head is complete (it ended `headLength` bytes into the connection).
        case complete(headLength: Int)
        /// Answer with this status line and close.
        case refuse(String)
    }

    public static let maxHead = 32 * 1024
    public let maxHead: Int
    /// The first bytes (to check the method) and the last three (an empty line may straddle reads).
    private var start: [UInt8] = []
    private var last: [UInt8] = []
    private var seen = 0

    public init(maxHead: Int = HTTPHeadScanner.maxHead) { self.maxHead = maxHead }

    /// Feeds the next bytes received.
    public mutating func feed(_ bytes: some Collection<UInt8>) -> Verdict {
        if start.count < 16 {
            start += bytes.prefix(16 - start.count)
            if !Self.mayStartRequest(start) { return .refuse("400 Bad Request") }
        }
        // Where the head ends (its empty line), counted from the connection's first byte.
        let window = last + bytes.prefix(3)
        var end: Int? = nil
        if let range = window.firstRange(of: [13, 10, 13, 10]) {
            end = seen + range.upperBound - last.count
        } else if let offset = Self.emptyLine(in: bytes) {
            end = seen + offset
        }
        last = Array((last + bytes.suffix(3)).suffix(3))
        seen += bytes.count
        if (end ?? seen) > maxHead { return .refuse("431 Request Header Fields Too Large") }
        return end.map { .complete(headLength: $0) } ?? .more
    }

    /// The offset just past the first CR LF CR LF in `bytes`.
    static func emptyLine(in bytes: some Collection<UInt8>) -> Int? {
        var matched = 0
        for (offset, byte) in bytes.enumerated() {
            switch (matched, byte) {
            case (0, 13), (2, 13): matched += 1
            case (1, 10), (3, 10): matched += 1
            case (_, 13): matched = 1
            default: matched = 0
            }
            if matched == 4 { return offset + 1 }
        }
        return nil
    }

    /// Whether `bytes` can begin a request line: an upper-case method of up to 10 letters, then a space.
    public static func mayStartRequest(_ bytes: [UInt8]) -> Bool {
        for (index, byte) in bytes.enumerated() {
            if byte == UInt8(ascii: " ") { return index > 0 }
            if !(UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || index >= 10 { return false }
        }
        return true
    }
}
