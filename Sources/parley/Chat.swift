import ArgumentParser
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import NIOPosix
import ParleyChat
import ParleyClient
import ParleyCore
import ParleyWire

/// `parley chat`: the terminal client. Full screen at a terminal; line mode (one plain line per
/// event, one command per input line) when standard input or output is not a terminal.
struct Chat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat in a terminal (full screen), or line by line when piped.",
        discussion: """
            The password comes from PARLEY_PASSWORD or is asked for without echo. Type /help for the commands.
            /password asks for the current and the new password without showing them (when piped: on
            the next two input lines); /logout, /logout all, /sessions and /end <id> manage where you are logged in.
            Example: printf '/pm bob hi\\n/quit\\n' | PARLEY_PASSWORD=... parley chat --user alice
            """)

    @Option(help: "Server address.") var host = "127.0.0.1"
    @Option(help: "Server port (native protocol).") var port = 5555
    @Flag(help: "Connect over TLS, verifying the server's certificate against the system's trust roots (or --ca) for the --host name.")
    var tls = false
    @Option(name: .customLong("ca"), help: ArgumentHelp("Trust the certificate authorities in this PEM file instead of the system's (implies --tls).", valueName: "file"))
    var caFile: String?
    @Option(help: "Log in as this user (asks for the password unless PARLEY_PASSWORD is set).") var user: String?
    @Flag(help: "Register the --user account first.") var register = false
    @Flag(help: "Join as a guest (where the server allows guests), with --user as the name wanted.") var guest = false
    @Flag(name: .customLong("no-color"), help: "No colours (also when NO_COLOR is set).") var noColor = false

    func run() async throws {
        let interactive = Terminal.isInteractive
        let client: ParleyClient
        do {
            let security = tls || caFile != nil ? ClientTLS(caFile: caFile) : nil
            client = try await ParleyClient.connect(host: host, port: port, timeout: 5, group: MultiThreadedEventLoopGroup.singleton, tls: security)
        } catch {
            FileHandle.standardError.write(Data("Could not connect to \(host):\(port): \(Self.reason(error))\n".utf8))
            throw ExitCode(1)
        }
        let me: String
        do {
            me = try await signIn(client, interactive: interactive)
        } catch let exit as ExitCode {
            await client.close()
            throw exit
        }
        let controller = ChatController(client: client, me: me)
        if interactive {
            let color = !noColor && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
            let ending = try await FullScreen(controller: controller, server: "\(host):\(port)", me: me, color: color).run()
            if let ending, ending.kind != .loggedOut {
                // Kicked or banned: said once more on the normal screen, which outlives the chat's.
                FileHandle.standardError.write(Data((TextWidth.escapingControls(ending.text) + "\n").utf8))
                throw ExitCode(1)
            }
        } else {
            try await lineMode(controller, client: client)
        }
    }

    // MARK: Signing in

    /// Logs in, registers or joins as a guest; at a terminal, asks and lets the user try again.
    func signIn(_ client: ParleyClient, interactive: Bool) async throws -> String {
        let env = ProcessInfo.processInfo.environment
        func say(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }
        func ask(_ prompt: String) -> String? {
            FileHandle.standardError.write(Data(prompt.utf8))
            return readLine(strippingNewline: true)
        }
        if guest {
            guard let wanted = user ?? (interactive ? ask("Name: ") : nil) else {
                say("--guest needs --user NAME when not at a terminal")
                throw ExitCode(2)
            }
            do {
                let name = try await client.guest(wanted).username ?? wanted
                say("You are \(name) (guest).")
                return name
            } catch {
                say(ChatFormat.words(for: error))
                throw ExitCode(1)
            }
        }
        var attempts = 0
        while true {
            attempts += 1
            var name = user
            var registering = register
            if name == nil {
                guard interactive else {
                    say("Give --user NAME (and PARLEY_PASSWORD), or --guest, when not at a terminal.")
                    throw ExitCode(2)
                }
                guard let choice = ask("Log in or register? [l/r]: ") else { throw ExitCode(1) }
                registering = choice.lowercased().hasPrefix("r")
                name = ask("Username: ")
            }
            guard let name, !name.isEmpty else { throw ExitCode(1) }
            guard let password = env["PARLEY_PASSWORD"] ?? (interactive ? Terminal.readSecret(prompt: "Password: ") : nil) else {
                say("No password: set PARLEY_PASSWORD when not at a terminal.")
                throw ExitCode(2)
            }
            do {
                if registering {
                    try await client.register(name, password: password)
                    say("Registered \(name).")
                }
                let welcome = try await client.login(name, password: password)
                return welcome.username ?? name
            } catch {
                say(TextWidth.escapingControls(ChatFormat.words(for: error)))
                // A banned account stays banned whatever the password: no second try.
                let banned = (error as? ParleyError)?.code == .banned
                guard interactive, env["PARLEY_PASSWORD"] == nil, attempts < 5, !banned else { throw ExitCode(1) }
            }
        }
    }

    // MARK: Line mode

    /// What line mode waits for: the next input line, the end of the input, or the connection's end.
    enum LineInput: Sendable {
        case line(String)
        case inputEnded
        case closed
    }

    /// One command per input line, one plain line per event; exits 1 if any command failed or
    /// the connection ended before the input did (the server closed it, an operator kicked or
    /// banned the user: the reason is the last line printed). It never reconnects.
    func lineMode(_ controller: ChatController, client: ParleyClient) async throws {
        // The replay and who is online are printed before any command runs.
        _ = try? await client.next(timeout: 30, "the presence snapshot after the replay") {
            if case .presence(_, snapshot: true) = $0 { true } else { false }
        }
        // Input lines and the connection's end arrive on one stream, so that a connection closed
        // by the server ends the run at once, not at the next input line.
        let (inputs, post) = AsyncStream.makeStream(of: LineInput.self)
        let printer = Task {
            for await event in client.events() {
                for (line, _) in await controller.lines(for: event) { Self.print(line) }
            }
            post.yield(.closed)
        }
        // A thread of its own blocks in readLine (not one of the concurrency pool's few); it
        // goes with the process.
        Thread {
            while let line = readLine(strippingNewline: true) { post.yield(.line(line)) }
            post.yield(.inputEnded)
        }.start()
        var failed = false
        var lost = false
        /// After `/password` alone: the current and the new password are the next two lines
        /// (whole lines, so a password may hold spaces); those read so far.
        var passwords: [String]?
        reading: for await input in inputs {
            let line: String
            switch input {
            case .line(let text): line = text
            case .inputEnded: break reading
            case .closed:
                lost = true
                break reading
            }
            let outcome: ChatController.Outcome
            if var answers = passwords {
                answers.append(line)
                guard answers.count == 2 else {
                    passwords = answers
                    continue
                }
                passwords = nil
                outcome = await controller.run(.changePassword(current: answers[0], new: answers[1]))
            } else if (try? ChatCommand.parse(line)) == ChatCommand.changePassword(current: nil, new: nil) {
                passwords = []
                continue
            } else {
                outcome = await controller.run(line)
            }
            for (line, _) in outcome.lines { Self.print(line) }
            failed = failed || outcome.failed
            if outcome.quit { break }
            if !client.isActive {
                lost = true
                break
            }
        }
        if passwords != nil, !lost {
            Self.print("/password: give the current and the new password on the next two lines")
            failed = true
        }
        if lost {
            // The printer's last lines (a kick's reason, a logout's) come first.
            await printer.value
            if await controller.ended == nil { Self.print("connection lost") }
            failed = true
        }
        await client.close()
        printer.cancel()
        if failed { throw ExitCode(1) }
    }

    /// Why a connection failed, in words: the system's text for its errno, or the server's refusal.
    static func reason(_ error: any Error) -> String {
        if error is ParleyError || error is ParleyClient.ClientError { return ChatFormat.words(for: error) }
        let text = "\(error)"
        if let range = text.range(of: "errno: "), let code = Int32(text[range.upperBound...].prefix { $0.isNumber }) {
            return String(cString: strerror(code)).lowercased()
        }
        if text.lowercased().contains("timeout") || text.lowercased().contains("timed out") { return "timed out" }
        return text
    }

    /// Prints a line, with control characters escaped.
    static func print(_ text: String) {
        FileHandle.standardOutput.write(Data((TextWidth.escapingControls(text) + "\n").utf8))
    }

    /// Prints a chat line: a text of several lines as several lines, indented under the message
    /// text; other control characters escaped.
    static func print(_ line: ChatScreen.Line) {
        FileHandle.standardOutput.write(Data(ChatFormat.plainLines(line).map { $0 + "\n" }.joined().utf8))
    }
}
