import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import ParleyServer

/// `parley admin`: operator commands against a running server, over its control socket.
struct Admin: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Operate a running server: who is online, kick, ban, notices, history, backups.",
        discussion: """
            Talks to the server's control socket (<data-dir>/parley.sock, mode 0600: run it as the user the
            server runs as). The same commands can be typed into the server's console.

            \(AdminCommand.usage.map { "  \($0.0)\n      \($0.1)" }.joined(separator: "\n"))

            Examples: parley admin online; parley admin kick bob "flooding"; parley admin ban bob --for 1d spam;
            parley admin export --date 2026-12-04 --output chat.txt; parley admin backup /var/backups/parley.sqlite
            """)

    @Option(name: .customLong("data-dir"), help: "The server's data directory [PARLEY_DATA_DIR]. (default: ./parley-data)")
    var dataDirectory: String?
    @Option(help: "The control socket, if not in the data directory [PARLEY_CONTROL_SOCKET].") var socket: String?
    @Flag(help: "Answer in JSON (one document; export writes JSON lines with --format jsonl).") var json = false
    @Option(help: "The name kicked and banned users are shown (default: your login name).") var by: String?
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments.") var command: [String] = []

    func run() throws {
        guard !command.isEmpty else {
            throw ValidationError("give a command: \(AdminCommand.usage.map { $0.0.split(separator: " ")[0] }.joined(separator: ", "))")
        }
        var words = command
        do {
            words = try Self.prepare(words)
        } catch let error as AdminCommand.Invalid {
            Self.fail(error.description)
        }
        let environment = ProcessInfo.processInfo.environment
        let path = socket ?? environment["PARLEY_CONTROL_SOCKET"]
            ?? ((dataDirectory ?? environment["PARLEY_DATA_DIR"] ?? "./parley-data") as NSString).appendingPathComponent("parley.sock")
        let name = by ?? Self.loginName()
        var answer = try Self.send(words, by: name, to: path)
        if let question = answer["confirm"] as? String {
            guard isatty(STDIN_FILENO) == 1 else {
                Self.fail("\(question) Not confirmed: add --yes (no terminal to ask).")
            }
            FileHandle.standardError.write(Data("\(question) [y/N] ".utf8))
            guard let reply = readLine(), ["y", "yes"].contains(reply.lowercased().trimmingCharacters(in: .whitespaces)) else {
                Self.fail("nothing was deleted")
            }
            answer = try Self.send(words + ["--yes"], by: name, to: path)
        }
        guard answer["ok"] as? Bool == true else {
            Self.fail(answer["error"] as? String ?? "the server did not answer")
        }
        if json {
            if let document = answer["json"], let data = try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes]),
               !(words.first == "export" && !words.contains("--output")) {
                FileHandle.standardOutput.write(data + Data("\n".utf8))
            }
        } else if let text = answer["text"] as? String, !text.isEmpty {
            FileHandle.standardOutput.write(Data((text + "\n").utf8))
        }
    }

    /// What must be settled on this side: paths made absolute (the server resolves nothing
    /// relative to its own folder), a new password asked for at a terminal.
    static func prepare(_ words: [String]) throws -> [String] {
        var words = words
        let verb = words[0].lowercased()
        func absolute(_ path: String) -> String {
            path.hasPrefix("/") ? path : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
        }
        if verb == "backup", words.count == 2 { words[1] = absolute(words[1]) }
        if verb == "export", let index = words.firstIndex(of: "--output"), index + 1 < words.count { words[index + 1] = absolute(words[index + 1]) }
        if verb == "reset-password", !words.contains("--password"), isatty(STDIN_FILENO) == 1 {
            let first = Terminal.readSecret(prompt: "New password (empty to generate one): ") ?? ""
            if !first.isEmpty {
                guard Terminal.readSecret(prompt: "Again: ") == first else { throw AdminCommand.Invalid("the two passwords differ; nothing changed") }
                words += ["--password", first]
            }
        }
        // Parsed here too, so a mistake is reported without a server.
        _ = try AdminCommand.parse(words)
        return words
    }

    /// Sends one command and returns the final answer, writing what it streams to standard output.
    static func send(_ words: [String], by: String, to path: String) throws -> [String: Any] {
        let fd: Int32
        switch UnixSocket.connect(path) {
        case .success(let connected):
            fd = connected
        case .failure(let error):
            switch error.code {
            case ENOENT, ECONNREFUSED, ENOTSOCK:
                fail("no parley server is running there (no control socket answers at \(path)); give --data-dir or --socket")
            case EACCES, EPERM:
                fail("not allowed to open the control socket \(path): run parley admin as the user the server runs as")
            case ENAMETOOLONG:
                fail("the control socket path is too long: \(path)")
            default:
                fail("cannot reach the server at \(path): \(error.description)")
            }
        }
        defer { close(fd) }
        let request: [String: Any] = ["words": words, "by": by]
        var line = try JSONSerialization.data(withJSONObject: request)
        line.append(UInt8(ascii: "\n"))
        let sent = line.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == line.count else { fail("the server closed the control socket") }
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { fail("the server closed the connection without an answer") }
            pending += buffer[0..<n]
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let object = (try? JSONSerialization.jsonObject(with: Data(pending[..<newline]))) as? [String: Any] ?? [:]
                pending.removeSubrange(...newline)
                if let data = object["data"] as? String {
                    FileHandle.standardOutput.write(Data(data.utf8))
                } else {
                    return object
                }
            }
        }
    }

    static func loginName() -> String {
        if let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name { return String(cString: name) }
        return ProcessInfo.processInfo.environment["USER"] ?? "the operator"
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("parley admin: \(message)\n".utf8))
        Glibc.exit(1)
    }
}
