/// How many terminal columns a character takes: 0 for controls, combining marks and zero-width
/// joiners and spaces; 2 for a character whose first code point is East Asian wide or full-width
/// or an emoji shown as a picture (``wideRanges``, generated from the Unicode data files by
/// `scripts/generate-text-width`), and for an emoji made a picture by VS16 (U+FE0F); 1 otherwise.
/// Thread safety: stateless.
public enum TextWidth {
    public static func of(_ character: Character) -> Int {
        guard let first = character.unicodeScalars.first else { return 0 }
        let v = first.value
        if v < 0x20 || (0x7F..<0xA0).contains(v) { return 0 }
        if first.properties.generalCategory == .nonspacingMark || first.properties.generalCategory == .enclosingMark || v == 0x200B || v == 0x200D {
            return 0
        }
        if character.unicodeScalars.count > 1, character.unicodeScalars.contains(where: { $0.value == 0xFE0F }) { return 2 }
        return isWide(v) ? 2 : 1
    }

    /// Whether the code point `value` is in ``wideRanges`` (a binary search over its ranges).
    public static func isWide(_ value: UInt32) -> Bool {
        var low = 0
        var high = wideRanges.count / 2 - 1
        while low <= high {
            let middle = (low + high) / 2
            if value < wideRanges[2 * middle] {
                high = middle - 1
            } else if value > wideRanges[2 * middle + 1] {
                low = middle + 1
            } else {
                return true
            }
        }
        return false
    }

    public static func of(_ text: some StringProtocol) -> Int { text.reduce(0) { $0 + of($1) } }

    /// `text` with control characters shown escaped (`\u{1B}` as `^[`, others as `\u{…}`), so
    /// what others send is never interpreted by the terminal.
    /// - Parameter keepingNewlines: keep line feeds (a carriage return before one is dropped), for
    ///   a display that shows a text of several lines as several lines.
    public static func escapingControls(_ text: String, keepingNewlines: Bool = false) -> String {
        var out = ""
        let scalars = Array(text.unicodeScalars)
        for (index, scalar) in scalars.enumerated() {
            switch scalar.value {
            case 0x0A where keepingNewlines: out += "\n"
            case 0x0D where keepingNewlines && index + 1 < scalars.count && scalars[index + 1].value == 0x0A: break
            case 0x1B: out += "^["
            case 0x09: out += "    "
            case 0..<0x20, 0x7F, 0x80..<0xA0: out += "\\u{\(String(scalar.value, radix: 16))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
