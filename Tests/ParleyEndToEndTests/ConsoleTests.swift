import Foundation
#if canImport(Glibc)
import Glibc
#endif
import ParleyClient
import ParleyCore
import Testing

/// The operator's console of `parley serve`, driven through a pseudo-terminal (tmux) as an
/// operator types into it.
@Suite("Operating: the server's console", .timeLimit(.minutes(3)), .enabled(if: TmuxSession.available))
struct ConsoleTests {
    /// `parley serve` in tmux on free ports, and the native port it printed.
    static func serve(directory: String) async throws -> (TmuxSession, Int) {
        let session = try TmuxSession(width: 160, height: 50, command: [
            ProcessTests.executable.path, "serve", "--port", "0", "--no-http", "--data-dir", directory, "--bcrypt-cost", "4", "--log-level", "info",
        ], environment: [:])
        do {
            try await session.waitFor("parley>")
        } catch {
            Issue.record("the screen: \(session.screen)")
            session.kill()
            throw error
        }
        let match = try #require(session.screen.firstMatch(of: /listening on 127\.0\.0\.1:(\d+)/))
        return (session, try #require(Int(match.1)))
    }

    /// The last line of the screen that is not blank.
    static func lastLine(_ screen: String) -> String {
        screen.split(separator: "\n").last { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.map(String.init) ?? ""
    }

    @Test("classroom commands and admin commands at the console; log lines appear above the prompt without garbling what is typed; EXIT stops the server")
    func console() async throws {
        let directory = NSTemporaryDirectory() + "parley-console-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (console, port) = try await Self.serve(directory: directory)
        defer { console.kill() }
        let alice = try await ParleyClient.connect(host: "127.0.0.1", port: port)
        try await alice.register("alice", password: TestServer.password)
        try await alice.login("alice", password: TestServer.password)
        _ = try await alice.replay()
        try await console.waitFor("logged in")

        // Half a command typed when a log line arrives: the line goes above, the typing stays.
        try console.type("sta")
        try await eventually("the typed text") { Self.lastLine(console.screen) == "parley> sta" }
        let bob = try await ParleyClient.connect(host: "127.0.0.1", port: port)
        try await bob.register("bob", password: TestServer.password)
        try await bob.login("bob", password: TestServer.password)
        _ = try await bob.replay()
        try await eventually("bob's login logged above the prompt") {
            let screen = console.screen
            return screen.contains("user=bob") && Self.lastLine(screen) == "parley> sta"
        }
        #expect(!console.screen.split(separator: "\n").contains { $0.contains("parley> sta") && $0.contains("logged in") })
        try console.type("ts")
        try console.press("Enter")
        try await console.waitFor("accounts: 2")

        try console.type("ACTIVE USERS")
        try console.press("Enter")
        try await console.waitFor("2 users online")
        #expect(console.screen.contains("session") && console.screen.contains("native from 127.0.0.1"))

        for i in 1...3 { _ = try await alice.send("hello \(i)") }
        try console.type("Delete Chat Backup")
        try console.press("Enter")
        try await console.waitFor("Delete 3 messages (in every conversation)?")
        try console.type("y")
        try console.press("Enter")
        try await console.waitFor("deleted 3 messages (in every conversation)")
        let history = try await alice.request(.history(.room("general"), before: nil, limit: 10))
        #expect(history.messages?.isEmpty == true)

        try console.type("kick bob \"mind your language\"")
        try console.press("Enter")
        let kicked = try await bob.next("the kick") { if case .error = $0 { true } else { false } }
        guard case .error(let error) = kicked else { return }
        #expect(error.code == .kicked && error.reason == "mind your language")
        try await console.waitFor("kicked bob (1 session closed)")

        try console.type("frob")
        try console.press("Enter")
        try await console.waitFor("unknown command 'frob'; type help")

        try console.type("EXIT")
        try console.press("Enter")
        let notice = try await alice.next("the shutdown notice") { if case .shutdown = $0 { true } else { false } }
        #expect(notice == .shutdown(message: "the server is shutting down"))
        try await eventually("the server process to end") { console.exited }
        await alice.close()
        await bob.close()
    }

    @Test("without a terminal the console is off and standard input is not read")
    func noTerminal() async throws {
        let directory = NSTemporaryDirectory() + "parley-console-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A pipe of our own (Foundation closes its `Pipe`'s read end in this process), so that
        // what is left unread in it can be counted.
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        let reader = FileHandle(fileDescriptor: ends[0], closeOnDealloc: true)
        let writer = FileHandle(fileDescriptor: ends[1], closeOnDealloc: true)
        let (process, _, _) = try await ProcessTests.serve(directory: directory, input: reader)
        defer { process.terminate() }
        writer.write(Data("exit\n".utf8))
        let stats = try await AdminCLI.run(socket: directory + "/parley.sock", ["stats"])
        #expect(stats.status == 0)
        #expect(process.isRunning)
        var unread: Int32 = 0
        let asked = ioctl(ends[0], UInt(FIONREAD), &unread)
        #expect(asked == 0, "FIONREAD: \(String(cString: strerror(errno)))")
        #expect(unread == 5, "the 5 bytes written are still in the pipe")
        process.terminate()
        process.waitUntilExit()
    }
}
