import Foundation
#if canImport(Glibc)
import Glibc
#endif
import ParleyChat

/// The terminal settings to restore from a crash handler (which can capture nothing).
nonisolated(unsafe) private var crashSaved = termios()

/// The thin terminal layer of `parley chat`: raw mode (restored on exit, crash or signal), the
/// alternate screen, the size, key bytes from standard input, and drawing only the rows that
/// changed since the last frame.
/// Thread safety: used from one task at a time (the chat loop); `restore()` is also safe from a
/// signal handler's queue.
final class Terminal: @unchecked Sendable {
    // @unchecked: the saved termios is written once in enterRawMode and read by restore; frames
    // are drawn only by the chat loop's task.
    private var saved = termios()
    private var raw = false
    private var previous: [[Cell]] = []
    let color: Bool

    init(color: Bool) { self.color = color }

    static var isInteractive: Bool { isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1 }

    var size: (width: Int, height: Int) {
        var ws = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0, ws.ws_row > 0 { return (Int(ws.ws_col), Int(ws.ws_row)) }
        return (80, 24)
    }

    func enterRawMode() {
        tcgetattr(STDIN_FILENO, &saved)
        var t = saved
        cfmakeraw(&t)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &t)
        raw = true
        Terminal.shared = self
        crashSaved = saved
        // A crash (a Swift trap is SIGILL or SIGTRAP) must not leave the terminal raw: restore it
        // from the signal handler (tcsetattr and write are async-signal-safe), then die as before.
        for sig in [SIGILL, SIGTRAP, SIGABRT, SIGSEGV, SIGBUS, SIGFPE] {
            signal(sig) { number in
                _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &crashSaved)
                let reset: StaticString = "\u{1B}[0m\u{1B}[?25h\u{1B}[?1049l"
                _ = Glibc.write(STDOUT_FILENO, reset.utf8Start, reset.utf8CodeUnitCount)
                signal(number, SIG_DFL)
                raise(number)
            }
        }
        write("\u{1B}[?1049h\u{1B}[H\u{1B}[2J")
    }

    /// Leaves the alternate screen and restores the terminal as it was. Idempotent.
    func restore() {
        guard raw else { return }
        raw = false
        write("\u{1B}[0m\u{1B}[?25h\u{1B}[?1049l")
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
    }

    /// The terminal in use, for restoring on a signal.
    nonisolated(unsafe) static var shared: Terminal?

    func write(_ text: String) {
        var data = Array(text.utf8)
        var offset = 0
        while offset < data.count {
            let n = data.withUnsafeMutableBytes { Glibc.write(STDOUT_FILENO, $0.baseAddress! + offset, $0.count - offset) }
            if n <= 0 { break }
            offset += n
        }
    }

    /// Draws a frame: only rows that differ from the last frame are rewritten.
    func draw(_ rows: [[Cell]], cursor: (row: Int, column: Int), force: Bool = false) {
        var out = "\u{1B}[?25l"
        if force || previous.count != rows.count || previous.first?.count != rows.first?.count {
            out += "\u{1B}[2J"
            previous = []
        }
        for (index, row) in rows.enumerated() where index >= previous.count || previous[index] != row {
            out += "\u{1B}[\(index + 1);1H"
            var style: Style? = nil
            for cell in row where !cell.continuation {
                if cell.style != style {
                    out += sgr(cell.style)
                    style = cell.style
                }
                out.append(cell.character)
            }
            out += "\u{1B}[0m\u{1B}[K"
        }
        out += "\u{1B}[\(cursor.row + 1);\(cursor.column + 1)H\u{1B}[?25h"
        previous = rows
        write(out)
    }

    func sgr(_ style: Style) -> String {
        guard color else {
            switch style {
            case .status, .statusAlert: return "\u{1B}[0;7m"
            case .notice: return "\u{1B}[0;1m"
            default: return "\u{1B}[0m"
            }
        }
        switch style {
        case .plain, .prompt: return "\u{1B}[0m"
        case .general: return "\u{1B}[0;32m"
        case .privateMessage: return "\u{1B}[0;35m"
        case .group: return "\u{1B}[0;34m"
        case .system: return "\u{1B}[0;2m"
        case .error: return "\u{1B}[0;31m"
        case .mention: return "\u{1B}[0;1;33m"
        case .status: return "\u{1B}[0;7m"
        case .statusAlert: return "\u{1B}[0;7;33m"
        case .notice: return "\u{1B}[0;1;36m"
        }
    }

    /// Reads what the user types, as chunks of bytes, until standard input ends.
    static func input() -> AsyncStream<[UInt8]> {
        AsyncStream { continuation in
            let thread = Thread {
                var buffer = [UInt8](repeating: 0, count: 1024)
                while true {
                    let n = read(STDIN_FILENO, &buffer, buffer.count)
                    if n <= 0 { break }
                    continuation.yield(Array(buffer[0..<n]))
                }
                continuation.finish()
            }
            thread.start()
        }
    }

    /// Reads a password from the terminal without echo (or a line from standard input).
    static func readSecret(prompt: String) -> String? {
        FileHandle.standardError.write(Data(prompt.utf8))
        var t = termios()
        let isTTY = isatty(STDIN_FILENO) == 1
        if isTTY {
            tcgetattr(STDIN_FILENO, &t)
            var quiet = t
            quiet.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet)
        }
        defer {
            if isTTY {
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &t)
                FileHandle.standardError.write(Data("\n".utf8))
            }
        }
        return readLine(strippingNewline: true)
    }
}
