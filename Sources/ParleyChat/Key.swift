import Foundation

/// A key press, as decoded from a terminal's bytes.
public enum Key: Sendable, Equatable {
    case character(Character)
    case enter, backspace, delete, tab
    case left, right, up, down, home, end, pageUp, pageDown
    case wordLeft, wordRight
    /// Ctrl plus a letter (lower case), for those not given names above.
    case control(Character)
    case escape
}

/// Turns bytes from a terminal in raw mode into ``Key``s: UTF-8 characters, control keys, and the
/// escape sequences of xterm-like terminals (tmux included). A sequence split across reads is
/// kept until it is complete.
/// Thread safety: a value type.
public struct KeyDecoder: Sendable {
    private var pending: [UInt8] = []

    public init() {}

    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [Key] {
        pending += bytes
        var keys: [Key] = []
        var i = 0
        while i < pending.count {
            let b = pending[i]
            switch b {
            case 0x1B:
                guard i + 1 < pending.count else {
                    // A lone escape at the end of a read is the Escape key.
                    keys.append(.escape)
                    i += 1
                    continue
                }
                if let (key, length) = Self.escapeSequence(pending[i...]) {
                    if let key { keys.append(key) }
                    i += length
                } else if pending.count - i < 8 {
                    // Incomplete: wait for more bytes.
                    pending.removeFirst(i)
                    return keys
                } else {
                    i += 1
                }
            case 0x0D, 0x0A: keys.append(.enter); i += 1
            case 0x7F, 0x08: keys.append(.backspace); i += 1
            case 0x09: keys.append(.tab); i += 1
            case 0x01...0x1A:
                keys.append(.control(Character(UnicodeScalar(b + 0x60))))
                i += 1
            case 0x00, 0x1C...0x1F: i += 1
            default:
                let length = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
                guard i + length <= pending.count else {
                    pending.removeFirst(i)
                    return keys
                }
                let scalarBytes = pending[i..<(i + length)]
                if let s = String(bytes: scalarBytes, encoding: .utf8), let c = s.first {
                    // Join combining marks onto the character before them.
                    if case .character(let previous)? = keys.last, String(previous).unicodeScalars.count >= 1,
                       (String(previous) + s).count == 1 {
                        keys[keys.count - 1] = .character(Character(String(previous) + s))
                    } else {
                        keys.append(.character(c))
                    }
                }
                i += length
            }
        }
        pending.removeAll()
        return keys
    }

    /// The key an escape sequence at the start of `bytes` stands for and its length; nil when
    /// incomplete. An unknown complete sequence gives a nil key (ignored).
    static func escapeSequence(_ bytes: ArraySlice<UInt8>) -> (Key?, Int)? {
        let b = Array(bytes)
        guard b.count >= 2 else { return nil }
        if b[1] == UInt8(ascii: "[") || b[1] == UInt8(ascii: "O") {
            // CSI: parameters, then a final byte 0x40...0x7E.
            var j = 2
            while j < b.count, !(0x40...0x7E).contains(b[j]) { j += 1 }
            guard j < b.count else { return nil }
            let params = String(decoding: b[2..<j], as: UTF8.self)
            let final = Character(UnicodeScalar(b[j]))
            let length = j + 1
            let modified = params.contains(";5") || params.contains(";3")
            switch final {
            case "A": return (.up, length)
            case "B": return (.down, length)
            case "C": return (modified ? .wordRight : .right, length)
            case "D": return (modified ? .wordLeft : .left, length)
            case "H": return (.home, length)
            case "F": return (.end, length)
            case "~":
                switch params.split(separator: ";").first ?? "" {
                case "1", "7": return (.home, length)
                case "4", "8": return (.end, length)
                case "3": return (.delete, length)
                case "5": return (.pageUp, length)
                case "6": return (.pageDown, length)
                default: return (nil, length)
                }
            default: return (nil, length)
            }
        }
        // Alt+b / Alt+f: word jumps (readline); Alt+other: ignored.
        if b[1] == UInt8(ascii: "b") { return (.wordLeft, 2) }
        if b[1] == UInt8(ascii: "f") { return (.wordRight, 2) }
        return (.escape, 1)
    }
}
