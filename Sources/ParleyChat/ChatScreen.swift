import Foundation

/// One cell of the terminal grid: a character (a wide one takes this cell and a continuation
/// cell after it) and its style.
public struct Cell: Sendable, Equatable {
    public var character: Character
    public var style: Style
    /// The right half of a wide character: draws nothing itself.
    public var continuation = false

    public static let blank = Cell(character: " ", style: .plain)
}

/// How a cell looks. The renderer turns these into SGR codes (or nothing, without colour).
public enum Style: Sendable, Equatable {
    case plain, general, privateMessage, group, system, error, mention, status, statusAlert, prompt
    /// What an operator says to everyone (a notice, the message of the day): set apart from chat.
    case notice
}

/// What the chat screen shows, as a pure model: the conversations' messages in one scrollback,
/// the status line and the input line. ``render(width:height:)`` turns it into a grid of cells;
/// the terminal layer only draws what changed. Tested without a terminal.
/// Thread safety: a value type.
public struct ChatScreen: Sendable {
    /// A conversation one types into.
    public enum Conversation: Sendable, Hashable, CustomStringConvertible {
        case general
        case group(String)
        case user(String)

        public var description: String {
            switch self {
            case .general: "general"
            case .group(let name): name
            case .user(let name): "@" + name
            }
        }
    }

    /// One line of the scrollback.
    public struct Line: Sendable, Equatable {
        public var style: Style
        public var text: String
        /// The user's own name is mentioned (counted for the status line's marker).
        public var mentionsMe = false
        /// The name to highlight where it appears (the user's own, in others' messages).
        public var highlight: String?
        /// The column the message text starts at: a text of several lines shows each line after
        /// the first indented this far, under the text.
        public var indent: Int

        public init(style: Style, text: String, mentionsMe: Bool = false, highlight: String? = nil, indent: Int = 0) {
            self.style = style
            self.text = text
            self.mentionsMe = mentionsMe
            self.highlight = highlight
            self.indent = indent
        }
    }

    public var server: String
    public var username = ""
    public var connection = "connecting"
    public var current: Conversation = .general
    public private(set) var unread: [Conversation: Int] = [:]
    public private(set) var mentioned: Set<Conversation> = []
    public private(set) var lines: [Line] = []
    public var editor = LineEditor()
    /// While set, the input line asks for a secret (a password) with this prompt, and what is
    /// typed is not shown.
    public var secretPrompt: String?
    /// Rows scrolled back from the newest (0: following new messages).
    public private(set) var scrollBack = 0
    /// Lines that arrived while scrolled back (shown in the status line).
    public private(set) var newBelow = 0
    public let maxLines: Int
    /// The width of the last render, to keep the view still when lines arrive while scrolled back.
    private var lastWidth = 80
    private var lastPaneHeight = 20

    public init(server: String, maxLines: Int = 5000) {
        self.server = server
        self.maxLines = maxLines
    }

    /// Adds a line to the scrollback. A line in another conversation than the current one counts
    /// as unread there (and as a mention when it names the user).
    public mutating func append(_ line: Line, in conversation: Conversation? = nil) {
        var line = line
        line.text = TextWidth.escapingControls(line.text, keepingNewlines: true)
        if let conversation, conversation != current {
            unread[conversation, default: 0] += 1
            if line.mentionsMe { mentioned.insert(conversation) }
        }
        lines.append(line)
        if scrollBack > 0 {
            scrollBack += Self.wrap(line, width: lastWidth).count
            newBelow += 1
        }
        if lines.count > maxLines { lines.removeFirst(lines.count - maxLines) }
    }

    public mutating func system(_ text: String, style: Style = .system) {
        append(Line(style: style, text: text))
    }

    /// Makes `conversation` current and marks it read.
    public mutating func switchTo(_ conversation: Conversation) {
        current = conversation
        unread[conversation] = nil
        mentioned.remove(conversation)
    }

    public mutating func pageUp() {
        let rows = lines.reduce(0) { $0 + Self.wrap($1, width: lastWidth).count }
        scrollBack = min(max(0, rows - lastPaneHeight), scrollBack + max(1, lastPaneHeight - 1))
    }

    public mutating func pageDown() {
        scrollBack = max(0, scrollBack - max(1, lastPaneHeight - 1))
        if scrollBack == 0 { newBelow = 0 }
    }

    /// The status line's text: server, user, connection, current conversation, unread counts
    /// (with `!` where the user was mentioned), scroll position.
    public var statusText: String {
        // Most urgent first: a narrow terminal cuts the line's end.
        var parts = ["[\(connection)]", "[to: \(current)]"]
        let others = unread.filter { $0.value > 0 }.sorted { $0.key.description < $1.key.description }
        if !others.isEmpty {
            parts.append("[unread: " + others.map { "\($0.key)\(mentioned.contains($0.key) ? "!" : "") \($0.value)" }.joined(separator: ", ") + "]")
        }
        if scrollBack > 0 { parts.append(newBelow > 0 ? "[scrolled back, \(newBelow) new: PgDn]" : "[scrolled back: PgDn]") }
        parts.append(username.isEmpty ? "[\(server)]" : "[\(username)@\(server)]")
        return parts.joined(separator: " ")
    }

    /// The screen as a grid of `height` rows of `width` cells, and where the cursor goes.
    public mutating func render(width: Int, height: Int) -> (rows: [[Cell]], cursor: (row: Int, column: Int)) {
        let width = max(width, 10)
        let height = max(height, 3)
        lastWidth = width
        let paneHeight = height - 2
        lastPaneHeight = paneHeight
        // Wrap from the newest line back until the pane (plus what is scrolled back) is full.
        var rows: [[Cell]] = []
        let needed = paneHeight + scrollBack
        for line in lines.reversed() {
            rows.insert(contentsOf: Self.wrap(line, width: width), at: 0)
            if rows.count >= needed { break }
        }
        scrollBack = min(scrollBack, max(0, rows.count - paneHeight))
        if scrollBack == 0 { newBelow = 0 }
        let end = rows.count - scrollBack
        var pane = Array(rows[max(0, end - paneHeight)..<max(0, end)])
        while pane.count < paneHeight { pane.insert(Self.row([], width: width), at: 0) }

        let alert = !mentioned.isEmpty || connection != "connected"
        let status = Self.row(Array(statusText).map { Cell(character: $0, style: alert ? .statusAlert : .status) }, width: width, fill: alert ? .statusAlert : .status)

        // The input line scrolls sideways to keep the cursor in view. A secret is not shown.
        let prompt = Array(secretPrompt ?? "[\(current)] ").map { Cell(character: $0, style: .prompt) }
        var input = prompt
        var cursorColumn = prompt.count
        if secretPrompt == nil {
            for (index, character) in editor.text.enumerated() {
                if index == editor.cursor { cursorColumn = input.count }
                input += Self.cells(character, style: .plain)
            }
            if editor.cursor == editor.text.count { cursorColumn = input.count }
        }
        var offset = 0
        if cursorColumn >= width { offset = cursorColumn - width + 1 }
        let visible = Array(input.dropFirst(offset))
        return (pane + [status, Self.row(visible, width: width)], (height - 1, cursorColumn - offset))
    }

    static func cells(_ character: Character, style: Style) -> [Cell] {
        let w = TextWidth.of(character)
        if w == 0 { return [] }
        if w == 2 { return [Cell(character: character, style: style), Cell(character: " ", style: style, continuation: true)] }
        return [Cell(character: character, style: style)]
    }

    /// `cells` cut or padded to `width`.
    static func row(_ cells: [Cell], width: Int, fill: Style = .plain) -> [Cell] {
        var row = Array(cells.prefix(width))
        if row.last?.continuation == false, row.count == width, TextWidth.of(row.last!.character) == 2 { row[width - 1] = Cell(character: " ", style: fill) }
        while row.count < width { row.append(Cell(character: " ", style: fill)) }
        return row
    }

    /// Which characters belong to an occurrence of `name` (case-insensitive, as a whole word).
    static func highlighted(_ characters: [Character], name: String?) -> [Bool] {
        var marks = Array(repeating: false, count: characters.count)
        guard let name, !name.isEmpty else { return marks }
        let needle = Array(name.lowercased())
        let lower = characters.map { Character($0.lowercased()) }
        var i = 0
        while i + needle.count <= lower.count {
            let before = i == 0 || !(lower[i - 1].isLetter || lower[i - 1].isNumber)
            let afterIndex = i + needle.count
            let after = afterIndex == lower.count || !(lower[afterIndex].isLetter || lower[afterIndex].isNumber)
            if before, after, Array(lower[i..<afterIndex]) == needle {
                for j in i..<afterIndex { marks[j] = true }
                i = afterIndex
            } else {
                i += 1
            }
        }
        return marks
    }

    /// A line as rows of `width` cells: wrapped at the width (never splitting a wide character),
    /// and at newlines, where the next line starts under the message text (``Line/indent``, at
    /// most half the width); the user's own name highlighted where it appears.
    static func wrap(_ line: Line, width: Int) -> [[Cell]] {
        var rows: [[Cell]] = []
        var current: [Cell] = []
        let characters = Array(line.text)
        let marked = highlighted(characters, name: line.highlight)
        let indent = Array(repeating: Cell(character: " ", style: line.style), count: min(max(0, line.indent), width / 2))
        for (index, character) in characters.enumerated() {
            if character == "\n" {
                rows.append(row(current, width: width))
                current = indent
                continue
            }
            let cells = Self.cells(character, style: marked[index] ? .mention : line.style)
            if current.count + cells.count > width {
                rows.append(row(current, width: width))
                current = []
            }
            current += cells
        }
        rows.append(row(current, width: width))
        return rows
    }
}
