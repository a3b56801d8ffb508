import Foundation
#if canImport(Glibc)
import Glibc
#endif
import ParleyClient
import ParleyCore
import Testing

/// A terminal program in tmux: a tmux server of its own on a socket in a folder of its own
/// (`-S`), a fixed size, an explicit environment.
///
/// Nothing it starts outlives the test, whether the test passes, fails or runs out of time:
/// ``kill()`` (call it in a `defer`; the end of the test process calls it for any left) ends
/// the server with `kill-server`, then ends the tmux server and the program in the pane by pid
/// if they are still there (for when the socket cannot be reached), and only then removes the
/// socket's folder. (Sessions used to share tmux's default socket folder under `-L`; once a
/// socket file was gone, `kill-server` could not reach its server, and the server and its
/// `parley chat` ran on after the tests.)
/// Thread safety: `Sendable`; the pids are behind a lock and `kill()` may be called from any
/// thread, more than once.
final class TmuxSession: Sendable {
    /// The folder (made by `mkdtemp`, short enough for a socket path) holding the socket.
    let directory: String
    let socket: String
    let name = "chat"
    private let processes: Locked<Processes>

    /// The processes to end, known from the start: the tmux server and the program in its pane.
    struct Processes: Sendable {
        var server: Started?
        var pane: Started?
        var ended = false
    }

    /// A process and when it started (from `/proc/PID/stat`; an `exec` keeps it), so that a pid
    /// the system has since given to another process is never signalled.
    struct Started: Sendable {
        var pid: pid_t
        var startTime: String
    }

    static let spawning = NSLock()

    static var available: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux") }

    /// Every session not yet killed, by folder, for the end of the test process.
    static let running = Locked<[String: TmuxSession]>([:])
    /// Kills what is still running when the test process exits (a test that ran out of time may
    /// never reach its `defer`).
    static let killAtExit: Void = { _ = atexit { TmuxSession.killAll() } }()

    static func killAll() {
        let sessions = running.withLock { Array($0.values) }
        for session in sessions { session.kill() }
    }

    init(width: Int = 80, height: Int = 20, command: [String], environment: [String: String]) throws {
        var template = Array("/tmp/parley-tmux-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ParleyClient.ClientError.closed }
        directory = String(cString: made)
        socket = directory + "/socket"
        processes = Locked(Processes())
        _ = Self.killAtExit
        Self.running.withLock { $0[directory] = self }
        let env = ["PATH=/usr/bin:/bin", "TERM=xterm-256color", "HOME=" + NSTemporaryDirectory(), "LANG=C.UTF-8"]
            + environment.map { "\($0.key)=\($0.value)" }
        do {
            // The tmux server started here must not inherit a pipe (its reader would wait forever).
            try tmux(["-f", "/dev/null", "new-session", "-d", "-x", "\(width)", "-y", "\(height)", "-s", name, "/usr/bin/env", "-i"] + env + command,
                     output: false)
            // Known at once, so that they can be ended even if the socket goes.
            let pids = try tmux(["display-message", "-p", "-t", name, "#{pid} #{pane_pid}"])
                .split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            processes.withLock {
                $0.server = pids.first.flatMap(TmuxSession.started)
                $0.pane = pids.dropFirst().first.flatMap(TmuxSession.started)
            }
            try tmux(["set-option", "-t", name, "remain-on-exit", "on"], output: false)
        } catch {
            kill()
            throw error
        }
    }

    static func started(_ pid: pid_t) -> Started? {
        startTime(of: pid).map { Started(pid: pid, startTime: $0) }
    }

    /// When process `pid` started (field 22 of `/proc/PID/stat`, in clock ticks after boot), or
    /// nil when there is no such process.
    static func startTime(of pid: pid_t) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let end = stat.lastIndex(of: ")") else { return nil }
        // After the command's closing parenthesis: field 3 (the state) onwards.
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        return fields.count > 19 ? String(fields[19]) : nil
    }

    /// Whether `process` is still running (the same process, not another given its pid).
    static func alive(_ process: Started) -> Bool {
        Glibc.kill(process.pid, 0) == 0 && startTime(of: process.pid) == process.startTime
    }

    /// Runs tmux with `arguments` (posix_spawn and waitpid: Foundation's `Process` does not
    /// reliably see its children exit when waited for from many tasks at once).
    @discardableResult
    func tmux(_ arguments: [String], output: Bool = true) throws -> String {
        var argv = ["/usr/bin/tmux", "-S", socket] + arguments
        if arguments.contains("new-session") {
            // The tmux server lives on after this call: it must not inherit the test process's
            // descriptors (a server's listening socket would keep its port taken).
            argv = ["/usr/bin/python3", "-c", "import os,sys; os.closerange(3, 1 << 16); os.execv('/usr/bin/tmux', ['tmux'] + sys.argv[1:])"]
                + argv.dropFirst()
        }
        var fds: [Int32] = [0, 0]
        // Close-on-exec, so a tmux server forked by another test's spawn never holds this pipe open.
        // One spawn at a time, with close-on-exec pipes: a tmux server forked by another test's
        // spawn must never hold this pipe open (its read would never end).
        Self.spawning.lock()
        defer { Self.spawning.unlock() }
        guard pipe(&fds) == 0 else { throw ParleyClient.ClientError.closed }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if output {
            posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        } else {
            // The tmux server started by new-session must not inherit the pipe.
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        var pid: pid_t = 0
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArgs, environ)
        close(fds[1])
        defer { close(fds[0]) }
        guard spawned == 0 else { throw ParleyClient.ClientError.closed }
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fds[0], &buffer, buffer.count)
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return String(decoding: data, as: UTF8.self)
    }

    func type(_ text: String) throws { try tmux(["send-keys", "-t", name, "-l", text], output: false) }
    func press(_ keys: String...) throws { try tmux(["send-keys", "-t", name] + keys, output: false) }
    var screen: String { (try? tmux(["capture-pane", "-p", "-t", name])) ?? "" }
    var lines: [String] { screen.components(separatedBy: "\n") }
    func resize(width: Int, height: Int) throws { try tmux(["resize-window", "-t", name, "-x", "\(width)", "-y", "\(height)"], output: false) }
    var exited: Bool { (try? tmux(["display-message", "-p", "-t", name, "#{pane_dead}"]))?.hasPrefix("1") == true }
    /// Whether the pane shows the terminal's alternate screen (a full-screen program's).
    var alternateScreen: Bool { (try? tmux(["display-message", "-p", "-t", name, "#{alternate_on}"]))?.hasPrefix("1") == true }

    /// Waits until the screen shows `text`.
    func waitFor(_ text: String, timeout: Double = 20) async throws {
        try await eventually("the screen to show \"\(text)\"", timeout: timeout) { self.screen.contains(text) }
    }

    /// Ends the tmux server and the program in it, and removes the socket's folder. First
    /// `kill-server` (the program gets SIGHUP and restores its terminal); whatever is still
    /// running a second later (the socket was gone, or the program ignored the hangup) is ended
    /// by pid: the program first, then the server. Safe to call more than once.
    func kill() {
        let known = processes.withLock { p -> Processes? in
            if p.ended { return nil }
            p.ended = true
            return p
        }
        guard let known else { return }
        _ = try? tmux(["kill-server"], output: false)
        let left = [known.pane, known.server].compactMap { $0 }
        let deadline = ContinuousClock.now + .seconds(1)
        while left.contains(where: Self.alive), ContinuousClock.now < deadline { usleep(10_000) }
        for process in left where Self.alive(process) {
            Glibc.kill(process.pid, SIGKILL)
        }
        try? FileManager.default.removeItem(atPath: directory)
        Self.running.withLock { $0[directory] = nil }
    }
}

@Suite("End to end: parley chat", .timeLimit(.minutes(3)), .enabled(if: TmuxSession.available))
struct ChatClientTests {
    static var parley: String { ProcessTests.executable.path }

    static func chat(_ s: TestServer, user: String, extra: [String] = [], width: Int = 80, height: Int = 20) throws -> TmuxSession {
        try TmuxSession(width: width, height: height, command: [parley, "chat", "--port", "\(s.port)", "--user", user] + extra,
                        environment: ["PARLEY_PASSWORD": TestServer.password])
    }

    @Test("two users talk in general, privately and in a group; a message arriving mid-typing leaves the typed text intact; help, a bad command, Tab")
    func talk() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        try await s.register("alice")
        try await s.register("bob")
        let alice = try Self.chat(s, user: "alice")
        defer { alice.kill() }
        let bob = try Self.chat(s, user: "bob")
        defer { bob.kill() }
        try await alice.waitFor("[connected]")
        try await bob.waitFor("[connected]")
        #expect(alice.alternateScreen)
        try alice.type("hello bob"); try alice.press("Enter")
        try await bob.waitFor("alice: hello bob")
        // bob is half-way through a line when alice's private message arrives.
        try bob.type("half a thou")
        try alice.type("/pm bob psst"); try alice.press("Enter")
        try await bob.waitFor("(PM) alice: psst")
        #expect(bob.lines.last { $0.hasPrefix("[general]") } == "[general] half a thou", "the input line is untouched")
        try bob.type("ght"); try bob.press("Enter")
        try await alice.waitFor("bob: half a thought")
        // A group: created, joined, used.
        try alice.type("/cg team"); try alice.press("Enter")
        try await alice.waitFor("created group team")
        try bob.type("/jg team"); try bob.press("Enter")
        try await alice.waitFor("bob joined team")
        try bob.type("/gc team for the team"); try bob.press("Enter")
        try await alice.waitFor("(team) bob: for the team")
        // Help, a bad command, Tab completion.
        try alice.type("/help"); try alice.press("Enter")
        try await alice.waitFor("/listg — list my groups")
        try alice.type("/nonsense"); try alice.press("Enter")
        try await alice.waitFor("unknown command /nonsense; /help lists the commands")
        try alice.type("/lis"); try alice.press("Tab")
        try await alice.waitFor("[general] /listg")
        try alice.press("Enter")
        try await alice.waitFor("your groups: team")
        try alice.type("/to b"); try alice.press("Tab")
        try await alice.waitFor("[general] /to bob")
        try alice.press("Enter")
        try await alice.waitFor("[to: @bob]")
        // Quitting restores the terminal: the alternate screen is gone and the exit status is 0.
        try alice.press("C-c")
        try await eventually("the client to exit") { alice.exited }
        #expect(!alice.alternateScreen, "the terminal is back on its normal screen")
        #expect(!alice.screen.contains("[connected]"), "the chat screen is gone: \(alice.screen)")
        await s.stop()
    }

    @Test("lines pasted at once run in the order typed: a group made or joined by one line is there for the next")
    func pastedLinesKeepTheirOrder() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        try await s.register("alice")
        try await s.register("bob")
        let alice = try Self.chat(s, user: "alice")
        defer { alice.kill() }
        let bob = try Self.chat(s, user: "bob")
        defer { bob.kill() }
        try await alice.waitFor("[connected]")
        try await bob.waitFor("[connected]")
        // Both lines reach the client in one write, as a paste does.
        try alice.type("/cg team\r/gc team one\r")
        try await alice.waitFor("(team) alice: one")
        try bob.type("/jg team\r/gc team first!\r")
        try await alice.waitFor("(team) bob: first!")
        try await bob.waitFor("(team) bob: first!")
        #expect(!alice.screen.contains("there is no group"), "\(alice.screen)")
        #expect(!bob.screen.contains("there is no group") && !bob.screen.contains("not a member"), "\(bob.screen)")
        await s.stop()
    }

    @Test("scrollback with PageUp/PageDown holds still while messages arrive; a resize redraws; long and wide text wraps")
    func scrollAndResize() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let writer = try await s.user("writer")
        try await s.register("reader")
        let reader = try Self.chat(s, user: "reader", width: 60, height: 12)
        defer { reader.kill() }
        try await reader.waitFor("[connected]")
        for i in 0..<30 { try await writer.send("line \(i)") }
        try await reader.waitFor("writer: line 29")
        try reader.press("PPage")
        try await reader.waitFor("[scrolled back: PgDn]")
        let view = reader.lines.prefix(10)
        #expect(!view.contains { $0.contains("line 29") })
        try await writer.send("line 30")
        try await reader.waitFor("[scrolled back, 1 new: PgDn]")
        #expect(reader.lines.prefix(10) == view, "the view does not move")
        try reader.press("NPage"); try reader.press("NPage")
        try await reader.waitFor("writer: line 30")
        try reader.resize(width: 30, height: 10)
        try await writer.send("日本語のテキストがここで折り返される長い行です")
        try await eventually("the wide line wrapped at 30 columns") {
            reader.lines.contains { $0.contains("writer: 日本") } && reader.lines.allSatisfy { $0.count <= 30 }
        }
        await writer.close()
        await s.stop()
    }

    @Test("after a server restart the client reconnects and shows what was missed, once")
    func reconnect() async throws {
        let directory = NSTemporaryDirectory() + "parley-chat-" + UUID().uuidString
        let s = try await TestServer.start(directory: directory)
        let alice = try await s.user("alice")
        try await s.register("bob")
        let bob = try Self.chat(s, user: "bob")
        defer { bob.kill() }
        try await bob.waitFor("[connected]")
        try await alice.send("before the restart")
        try await bob.waitFor("alice: before the restart")
        await alice.close()
        await s.stop()
        try await bob.waitFor("reconnecting")
        // The port is free once the old connections have closed on both sides.
        let restarted = try await TestServer.restart(directory: directory, port: s.port)
        defer { restarted.removeData() }
        let alice2 = try await restarted.user("alice", register: false)
        try await alice2.send("while bob was away")
        try await bob.waitFor("alice: while bob was away", timeout: 40)
        try await bob.waitFor("[connected]")
        let screen = bob.screen
        #expect(screen.components(separatedBy: "alice: before the restart").count == 2, "shown once: \(screen)")
        #expect(screen.components(separatedBy: "alice: while bob was away").count == 2, "shown once: \(screen)")
        await alice2.close()
        await restarted.stop()
    }

    /// The next error frame `client` is sent without a request (a kick, a ban).
    static func nextError(_ client: ParleyClient, _ what: String) async throws -> ParleyError {
        let event = try await client.next(what) { if case .error = $0 { true } else { false } }
        guard case .error(let error) = event else { throw ParleyClient.ClientError.timedOut(what) }
        return error
    }

    /// Has `parley admin notice` send `text` and returns the operator's name as the server
    /// gives it, from `listener`'s copy.
    static func notice(_ s: TestServer, _ text: String, heardBy listener: ParleyClient) async throws -> String {
        let sent = try await s.admin("notice", text)
        #expect(sent.status == 0, "\(sent.output)")
        let event = try await listener.next("the notice") { if case .notice(text, _) = $0 { true } else { false } }
        guard case .notice(_, let by) = event else { throw ParleyClient.ClientError.timedOut("the notice") }
        #expect(!by.isEmpty, "a notice names who sent it")
        return by
    }

    @Test("an operator in parley chat: the message of the day at login, a notice as a system line, a kick with who and why; the client stops, does not reconnect, says so again on leaving, and the user may come back by hand")
    func kickedByAnOperator() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        try await s.register("alice")
        let bob = try await s.user("bob")
        // Wide, so that no line of the test wraps whatever the operator's name.
        let alice = try Self.chat(s, user: "alice", width: 140)
        defer { alice.kill() }
        try await alice.waitFor("[connected]")
        try await alice.waitFor("*** " + s.server.configuration.motd)
        #expect(try await bob.presence(of: "alice"))
        // A second session of alice's: a kick closes every one, and this one shows the frame.
        let elsewhere = try await s.user("alice", register: false)

        let by = try await Self.notice(s, "maintenance at noon", heardBy: bob)
        try await alice.waitFor("*** notice from \(by): maintenance at noon")
        #expect(alice.screen.contains("[connected]"), "a notice ends nothing")

        let kick = try await s.admin("kick", "alice", "spamming")
        #expect(kick.status == 0, "\(kick.output)")
        let error = try await Self.nextError(elsewhere, "the kick")
        #expect(error.code == .kicked)
        #expect(error.reason == "spamming")
        #expect(error.by == by, "the same operator")
        let kickedBy = error.by ?? by
        try await alice.waitFor("*** kicked by \(kickedBy): spamming")
        try await alice.waitFor("kicked by \(kickedBy): spamming; not reconnecting")
        try await alice.waitFor("[kicked]")
        // No session comes back by itself: alice goes offline and stays so for a few seconds
        // (a reconnecting client's first try comes within 0.75 s), and the server lists her nowhere.
        try await bob.wentOffline("alice")
        let back = try? await bob.next(timeout: 3, "alice back online") {
            $0.presenceChanges?.contains { $0.username.lowercased() == "alice" && $0.online } == true
        }
        #expect(back == nil, "the kicked client reconnected")
        #expect(alice.screen.contains("[kicked]") && !alice.screen.contains("[reconnecting]"), "\(alice.screen)")
        let online = try await s.admin("--json", "online")
        #expect(online.status == 0, "\(online.output)")
        #expect(!online.output.lowercased().contains("\"alice\""), "\(online.output)")
        // Leaving: the reason stays on the normal screen, and the status says it failed.
        try alice.press("C-c")
        try await eventually("the client to exit") { alice.exited }
        #expect(alice.screen.contains("kicked by \(kickedBy): spamming"), "\(alice.screen)")
        // (The exit status, 1, is checked in line mode: tmux 3.3a leaves #{pane_dead_status} empty.)
        // A kick is no ban: coming back by hand works.
        let again = try Self.chat(s, user: "alice", width: 140)
        defer { again.kill() }
        try await again.waitFor("[connected]")
        await elsewhere.close()
        await bob.close()
        await s.stop()
    }

    @Test("a ban in parley chat: the live session shows who banned it and why and is not reconnected; logging in again is refused with the reason, at once")
    func bannedByAnOperator() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        try await s.register("alice")
        let alice = try Self.chat(s, user: "alice", width: 140)
        defer { alice.kill() }
        try await alice.waitFor("[connected]")
        let elsewhere = try await s.user("alice", register: false)
        let ban = try await s.admin("ban", "alice", "spam")
        #expect(ban.status == 0, "\(ban.output)")
        let error = try await Self.nextError(elsewhere, "the ban")
        #expect(error.code == .banned)
        #expect(error.reason == "spam")
        #expect(error.until == nil, "a ban without end")
        let by = try #require(error.by)
        try await alice.waitFor("*** banned by \(by): spam")
        try await alice.waitFor("[banned]")
        #expect(!alice.screen.contains("[reconnecting]"), "\(alice.screen)")
        // A new login (line mode, as a script would) is refused with the reason: status 1, no retry.
        let login = try await runProgram(ProcessTests.executable, ["chat", "--port", "\(s.port)", "--user", "alice"],
                                         environment: ["PARLEY_PASSWORD": TestServer.password])
        #expect(login.status == 1, "\(login.output)")
        #expect(login.output.contains("banned by \(by): spam"), "\(login.output)")
        await elsewhere.close()
        await s.stop()
    }

    @Test("line mode prints the message of the day, a notice and a kick as lines, and ends at once when kicked (status 1) though its input is still open")
    func lineModeKicked() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        try await s.register("alice")
        let bob = try await s.user("bob")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.parley)
        process.arguments = ["chat", "--port", "\(s.port)", "--user", "alice"]
        process.environment = ["PATH": "/usr/bin:/bin", "PARLEY_PASSWORD": TestServer.password]
        // Standard input stays open: only the server's closing the connection can end the client.
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stdout
        try process.run()
        defer {
            if process.isRunning { process.terminate() }
            try? stdin.fileHandleForWriting.close()
        }
        #expect(try await bob.presence(of: "alice"))
        let by = try await Self.notice(s, "maintenance at noon", heardBy: bob)
        let kick = try await s.admin("kick", "alice", "spamming")
        #expect(kick.status == 0, "\(kick.output)")
        let watchdog = Task {
            try await Task.sleep(for: .seconds(20))
            if process.isRunning {
                Issue.record("the client still ran 20 s after the kick")
                process.terminate()
            }
        }
        let output = await withTaskCancellationHandler {
            await Task.detached { String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }.value
        } onCancel: {
            if process.isRunning { process.terminate() }
        }
        await Task.detached { process.waitUntilExit() }.value
        watchdog.cancel()
        #expect(process.terminationStatus == 1, "\(output)")
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines.contains("*** " + s.server.configuration.motd), "\(output)")
        #expect(lines.contains("*** notice from \(by): maintenance at noon"), "\(output)")
        #expect(lines.last == "*** kicked by \(by): spamming", "the kick is the last word: \(output)")
        #expect(!output.contains("connection lost"), "\(output)")
        #expect(!output.contains("\u{1B}"), "no escape codes in line mode")
        await bob.close()
        await s.stop()
    }

    @Test("line mode: commands piped in, one plain line per event, the exit status says whether all succeeded; as a guest too")
    func lineMode() async throws {
        let s = try await TestServer.start { $0.guests = true }
        defer { s.removeData() }
        let bob = try await s.user("bob")
        func run(_ input: String, _ arguments: [String], password: Bool = true, port: Int? = nil) async throws -> (String, Int32) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.parley)
            process.arguments = ["chat", "--port", "\(port ?? s.port)"] + arguments
            var env = ["PATH": "/usr/bin:/bin"]
            if password { env["PARLEY_PASSWORD"] = TestServer.password }
            process.environment = env
            let stdin = Pipe(), stdout = Pipe()
            process.standardInput = stdin
            process.standardOutput = stdout
            process.standardError = stdout
            try process.run()
            // A test that runs out of time is cancelled: the client goes with it (its output then
            // ends, so the read below returns) instead of running on after the tests.
            return await withTaskCancellationHandler {
                stdin.fileHandleForWriting.write(Data(input.utf8))
                try? stdin.fileHandleForWriting.close()
                let output = await Task.detached { String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }.value
                await Task.detached { process.waitUntilExit() }.value
                return (output, process.terminationStatus)
            } onCancel: {
                if process.isRunning { process.terminate() }
            }
        }
        let (out, status) = try await run("/pm bob hi bob\n/cg team\n/listg\nin general\n/quit\n", ["--user", "alice", "--register"])
        #expect(status == 0, "\(out)")
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasSuffix("(PM to bob) alice: hi bob") })
        #expect(lines.contains("created group team"))
        #expect(lines.contains("your groups: team (1, owner alice)"))
        #expect(lines.contains { $0.hasSuffix(" alice: in general") })
        #expect(!out.contains("\u{1B}"), "no escape codes in line mode")
        _ = try await bob.nextMessage { $0.text == "hi bob" }
        // A failing command makes the exit status non-zero.
        let (bad, badStatus) = try await run("/jg nowhere\n", ["--user", "alice"])
        #expect(badStatus == 1)
        #expect(bad.contains("there is no group 'nowhere'"))
        // A guest gets the name the server gives and can talk.
        let (guest, guestStatus) = try await run("hello as a guest\n", ["--guest", "--user", "bob"], password: false)
        #expect(guestStatus == 0)
        #expect(guest.contains("bob2: hello as a guest"), "\(guest)")
        #expect(guest.contains("You are bob2 (guest)."))
        // Nobody listening: a clear message and a non-zero status.
        let (refused, refusedStatus) = try await run("", ["--user", "alice"], port: 1)
        #expect(refusedStatus == 1)
        #expect(refused.contains("Could not connect to 127.0.0.1:1: connection refused"), "\(refused)")
        await bob.close()
        await s.stop()
    }
}
