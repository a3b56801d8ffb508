/// The input line: text, cursor, the history of what was entered, and the editing keys of a
/// shell (left/right, word jumps, backspace, delete, home/end, Ctrl-U, Ctrl-W, up/down through
/// history). Pure: it knows nothing of terminals.
/// Thread safety: a value type.
public struct LineEditor: Sendable, Equatable {
    public private(set) var text: [Character] = []
    /// Cursor position, 0...text.count.
    public private(set) var cursor = 0
    public private(set) var history: [String] = []
    /// Index into history while browsing it with up/down; nil while editing a new line.
    private var browsing: Int? = nil
    /// The line being typed before browsing began, restored when browsing past the newest entry.
    private var draft: [Character] = []
    public let maxHistory: Int

    public init(maxHistory: Int = 500) { self.maxHistory = maxHistory }

    public var line: String { String(text) }

    public mutating func insert(_ characters: some Sequence<Character>) {
        for c in characters {
            text.insert(c, at: cursor)
            cursor += 1
        }
        browsing = nil
    }

    public mutating func backspace() {
        guard cursor > 0 else { return }
        text.remove(at: cursor - 1)
        cursor -= 1
    }

    public mutating func delete() {
        guard cursor < text.count else { return }
        text.remove(at: cursor)
    }

    public mutating func left() { cursor = max(0, cursor - 1) }
    public mutating func right() { cursor = min(text.count, cursor + 1) }
    public mutating func home() { cursor = 0 }
    public mutating func end() { cursor = text.count }

    public mutating func wordLeft() {
        while cursor > 0 && text[cursor - 1].isWhitespace { cursor -= 1 }
        while cursor > 0 && !text[cursor - 1].isWhitespace { cursor -= 1 }
    }

    public mutating func wordRight() {
        while cursor < text.count && text[cursor].isWhitespace { cursor += 1 }
        while cursor < text.count && !text[cursor].isWhitespace { cursor += 1 }
    }

    /// Ctrl-U: deletes from the start of the line to the cursor.
    public mutating func killToStart() {
        text.removeFirst(cursor)
        cursor = 0
    }

    /// Ctrl-W: deletes the word before the cursor.
    public mutating func killWord() {
        let end = cursor
        wordLeft()
        text.removeSubrange(cursor..<end)
    }

    public mutating func historyUp() {
        guard !history.isEmpty else { return }
        let next: Int
        if let browsing { next = max(0, browsing - 1) } else {
            draft = text
            next = history.count - 1
        }
        browsing = next
        text = Array(history[next])
        cursor = text.count
    }

    public mutating func historyDown() {
        guard let browsing else { return }
        if browsing + 1 < history.count {
            self.browsing = browsing + 1
            text = Array(history[browsing + 1])
        } else {
            self.browsing = nil
            text = draft
        }
        cursor = text.count
    }

    /// Enter: returns the line, remembers it (unless blank, the same as the last, or
    /// `remember` is false, as for a password), clears.
    public mutating func submit(remember: Bool = true) -> String {
        let entered = line
        if remember, !entered.trimmingCharacters(in: .whitespaces).isEmpty, history.last != entered {
            history.append(entered)
            if history.count > maxHistory { history.removeFirst() }
        }
        text = []
        cursor = 0
        browsing = nil
        draft = []
        return entered
    }

    /// Tab: completes the word before the cursor from `candidates` (commands after a leading
    /// `/`, otherwise user and group names). With one match the word is replaced (and a space
    /// added); with several, their common prefix. Returns the matches.
    @discardableResult
    public mutating func complete(commands: [String], names: [String]) -> [String] {
        var start = cursor
        while start > 0 && !text[start - 1].isWhitespace { start -= 1 }
        let word = String(text[start..<cursor])
        let isCommand = start == 0 && word.hasPrefix("/")
        let stem = isCommand ? String(word.dropFirst()) : word
        guard !stem.isEmpty || isCommand else { return [] }
        let pool = isCommand ? commands : names
        let matches = pool.filter { $0.lowercased().hasPrefix(stem.lowercased()) }.sorted()
        guard !matches.isEmpty else { return [] }
        var replacement: String
        if matches.count == 1 {
            replacement = matches[0] + " "
        } else {
            replacement = matches.dropFirst().reduce(matches[0]) { common, next in
                String(zip(common, next).prefix { $0.lowercased() == $1.lowercased() }.map(\.0))
            }
            if replacement.count < stem.count { replacement = stem }
        }
        if isCommand { replacement = "/" + replacement }
        text.replaceSubrange(start..<cursor, with: Array(replacement))
        cursor = start + replacement.count
        return matches
    }
}
