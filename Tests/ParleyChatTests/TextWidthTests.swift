import ParleyChat
import Testing

@Suite("Text width: columns from the Unicode data files")
struct TextWidthTests {
    @Test("wide and full-width characters and emoji take 2 columns, also those outside the common blocks",
          arguments: [
              ("\u{1F210}", 2), ("\u{1F23B}", 2), ("\u{A960}", 2), ("\u{A97C}", 2), ("\u{16FE0}", 2), ("\u{16FE3}", 2),
              ("\u{3000}", 2), ("\u{4E00}", 2), ("\u{FF21}", 2), ("\u{AC00}", 2), ("\u{20000}", 2), ("\u{1F600}", 2),
              ("\u{231A}", 2), ("\u{1F1E6}\u{1F1EB}", 2),
          ] as [(String, Int)])
    func wide(_ text: String, _ columns: Int) {
        #expect(TextWidth.of(Character(text)) == columns, "U+\(String(text.unicodeScalars.first!.value, radix: 16, uppercase: true))")
    }

    @Test("narrow, neutral and ambiguous characters take 1 column; just past a wide range is narrow again",
          arguments: ["a", "é", "\u{1F23C}", "\u{A97D}", "\u{16FE5}", "\u{2764}", "\u{1F321}", "\u{00A1}", "\u{FF61}"])
    func narrow(_ text: String) {
        #expect(TextWidth.of(Character(text)) == 1, "U+\(String(text.unicodeScalars.first!.value, radix: 16, uppercase: true))")
    }

    @Test("combining marks, joiners and controls take no column; a VS16 or ZWJ emoji sequence takes 2")
    func zeroWidthAndSequences() {
        #expect(TextWidth.of(Character("\u{0301}")) == 0)
        #expect(TextWidth.of(Character("\u{200D}")) == 0)
        #expect(TextWidth.of(Character("\u{200B}")) == 0)
        #expect(TextWidth.of(Character("\u{1B}")) == 0)
        #expect(TextWidth.of(Character("\u{302A}")) == 0, "a combining mark inside a wide block")
        #expect(TextWidth.of(Character("e\u{0301}")) == 1)
        #expect(TextWidth.of(Character("\u{2764}\u{FE0F}")) == 2, "VS16 makes a text-style emoji a picture")
        #expect(TextWidth.of(Character("\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}")) == 2, "a ZWJ family is one picture")
        let mixed: String = "a\u{1F210}\u{0301}日"
        #expect(TextWidth.of(mixed) == 5)
    }

    @Test("a line of squared ideographs wraps at the screen's width and leaves the status line alone")
    func wideLineWraps() {
        var s = ChatScreen(server: "h")
        s.connection = "connected"
        s.append(.init(style: .general, text: String(repeating: "\u{1F210}", count: 40)))
        let (rows, _) = s.render(width: 20, height: 8)
        let squares = rows.map { row in row.filter { $0.character == "\u{1F210}" && !$0.continuation }.count }
        #expect(squares.prefix(6) == [0, 0, 10, 10, 10, 10], "10 two-column characters per 20-column row: \(squares)")
        #expect(String(rows[6].map(\.character)).hasPrefix("[connected]"))
    }
}
