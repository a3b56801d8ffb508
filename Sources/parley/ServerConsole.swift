import Foundation
#if canImport(Glibc)
import Glibc
#endif
import ParleyCore
import ParleyServer

/// The operator's console of `parley serve`: when standard input is a terminal, commands typed
/// there run against the server (`help`, `active users`, `delete chat backup`, `exit`, and every
/// `parley admin` command by the same name). Log lines and answers are written above the prompt,
/// and the prompt with what was typed so far is drawn again below them, so neither garbles the other.
///
/// The terminal is put in "cbreak" mode (no echo, no line buffering; Ctrl-C still stops the
/// server) and restored when the console stops.
/// Thread safety: `Sendable`; the screen state is behind a lock; keys are read on one thread.
final class ServerConsole: Sendable {
    static let prompt = "parley> "

    private struct Screen {
        var input: [Character] = []
        var active = false
        /// A question waiting for y/n, and what to do with the answer.
        var pendingQuestion: (@Sendable (Bool) -> Void)? = nil
    }

    private let screen = Locked(Screen())
    private let saved = Locked<termios?>(nil)
    private let server: ParleyServer
    private let operatorName: String

    init(server: ParleyServer, operatorName: String) {
        self.server = server
        self.operatorName = operatorName
    }

    /// Whether the console should run: standard input is a terminal.
    /// (Standard error too: log lines redirected elsewhere must go there, not to the console.)
    static var available: Bool { isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1 && isatty(STDERR_FILENO) == 1 }

    /// Enters cbreak mode, draws the prompt and reads keys on a thread of its own.
    func start() {
        var t = termios()
        guard tcgetattr(STDIN_FILENO, &t) == 0 else { return }
        saved.withLock { $0 = t }
        var quiet = t
        quiet.c_lflag &= ~tcflag_t(ICANON | ECHO)
        withUnsafeMutableBytes(of: &quiet.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet)
        screen.withLock { $0.active = true }
        // Log lines for standard error come here, to be written above the prompt.
        ParleyLogging.terminalWriter = { [weak self] line in self?.emit(line) }
        emit("type help for the operator's commands")
        let thread = Thread { [self] in readKeys() }
        thread.name = "parley-console"
        thread.start()
    }

    /// Restores the terminal. Idempotent.
    func stop() {
        let wasActive = screen.withLock { s in defer { s.active = false }; return s.active }
        ParleyLogging.terminalWriter = nil
        guard wasActive else { return }
        Self.write("\r\u{1B}[K")
        if var t = saved.withLock({ $0 }) { tcsetattr(STDIN_FILENO, TCSANOW, &t) }
    }

    /// Writes `text` (one or more lines) above the prompt, then the prompt and the input again.
    func emit(_ text: String) {
        screen.withLock { s in
            let body = text.hasSuffix("\n") ? String(text.dropLast()) : text
            var out = "\r\u{1B}[K" + body.replacingOccurrences(of: "\n", with: "\r\n\u{1B}[K") + "\r\n"
            if s.active { out += Self.promptLine(s) }
            Self.write(out)
        }
    }

    private static func promptLine(_ s: Screen) -> String {
        (s.pendingQuestion == nil ? prompt : "[y/N] ") + String(s.input)
    }

    private static func write(_ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(STDOUT_FILENO, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            offset += n
        }
    }

    /// Reads keys until standard input ends: printable characters edit the line, Enter runs it.
    private func readKeys() {
        var decoder = UTF8Decoder()
        var escape = 0
        var byte: UInt8 = 0
        while read(STDIN_FILENO, &byte, 1) == 1 {
            if escape > 0 {
                // An escape sequence (arrows, function keys): ignored to its final byte.
                if escape == 1 { escape = byte == UInt8(ascii: "[") || byte == UInt8(ascii: "O") ? 2 : 0 } else if (0x40...0x7E).contains(byte) { escape = 0 }
                continue
            }
            switch byte {
            case 0x1B: escape = 1
            case 0x0D, 0x0A: enter()
            case 0x7F, 0x08:
                screen.withLock { s in
                    guard s.active, !s.input.isEmpty else { return }
                    s.input.removeLast()
                    Self.write("\r\u{1B}[K" + Self.promptLine(s))
                }
            case 0x15: // Ctrl-U
                screen.withLock { s in
                    s.input.removeAll()
                    Self.write("\r\u{1B}[K" + Self.promptLine(s))
                }
            case 0x04: // Ctrl-D
                emit("type exit to stop the server")
            case 0x00..<0x20:
                continue
            default:
                guard let character = decoder.add(byte) else { continue }
                screen.withLock { s in
                    guard s.active, s.input.count < 4096 else { return }
                    s.input.append(character)
                    Self.write(String(character))
                }
            }
        }
    }

    /// Runs the line typed, or answers the question asked.
    private func enter() {
        let (line, question) = screen.withLock { s -> (String, (@Sendable (Bool) -> Void)?) in
            let line = String(s.input)
            s.input.removeAll()
            let question = s.pendingQuestion
            s.pendingQuestion = nil
            return (line, question)
        }
        let shown = ParleyServer.printable(line)
        if let question {
            emit("[y/N] " + shown)
            question(["y", "yes"].contains(line.lowercased().trimmingCharacters(in: .whitespaces)))
            return
        }
        emit(Self.prompt + shown)
        let words = AdminCommand.words(line)
        guard !words.isEmpty else { return }
        let command: AdminCommand
        do {
            command = try AdminCommand.parse(words)
        } catch {
            emit(error.description)
            return
        }
        run(command)
    }

    private func run(_ command: AdminCommand) {
        let server = self.server
        let name = operatorName
        Task {
            do {
                let reply = try await server.perform(command, by: name) { [weak self] text in self?.emit(ParleyServer.printable(text)) }
                if !reply.text.isEmpty { self.emit(ParleyServer.printable(reply.text)) }
            } catch let error as AdminError {
                if let confirm = error.confirm, case .deleteHistory(let conversation, let before, _) = command {
                    self.ask(confirm) { yes in
                        if yes {
                            self.run(.deleteHistory(conversation: conversation, before: before, confirmed: true))
                        } else {
                            self.emit("nothing was deleted")
                        }
                    }
                } else {
                    self.emit(error.description)
                }
            } catch {
                self.emit("\(error)")
            }
        }
    }

    /// Asks a yes/no question; the next line typed answers it.
    private func ask(_ question: String, then answer: @escaping @Sendable (Bool) -> Void) {
        screen.withLock { $0.pendingQuestion = answer }
        emit(question)
    }
}

/// Turns bytes into characters as they arrive.
private struct UTF8Decoder {
    var pending: [UInt8] = []

    mutating func add(_ byte: UInt8) -> Character? {
        pending.append(byte)
        let expected = pending[0] < 0x80 ? 1 : pending[0] >= 0xF0 ? 4 : pending[0] >= 0xE0 ? 3 : 2
        guard pending.count >= expected else { return nil }
        defer { pending.removeAll() }
        let text = String(decoding: pending, as: UTF8.self)
        return text.first
    }
}
