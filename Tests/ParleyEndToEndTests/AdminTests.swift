import Foundation
import GRDB
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyStore
import ParleyWire
import Testing

/// Runs the built `parley admin` against a control socket, as an operator would.
enum AdminCLI {
    struct Result: Sendable {
        var status: Int32
        var output: String
        var errors: String
        /// The output as JSON (with `--json`).
        var json: Any? { try? JSONSerialization.jsonObject(with: Data(output.utf8), options: [.fragmentsAllowed]) }
    }

    /// `parley admin --socket SOCKET ARGS...`, with standard input not a terminal.
    /// - Parameter asUser: run as this numeric user id (through `setpriv`).
    static func run(socket: String, _ arguments: [String], asUser: Int? = nil) async throws -> Result {
        try await onOwnThread {
            let process = Process()
            var all = ["admin", "--socket", socket] + arguments
            if let uid = asUser {
                process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
                all = ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", ProcessTests.executable.path] + all
            } else {
                process.executableURL = ProcessTests.executable
            }
            process.arguments = all
            let (out, err) = (Pipe(), Pipe())
            process.standardOutput = out
            process.standardError = err
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let output = out.fileHandleForReading.readDataToEndOfFile()
            let errors = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return Result(status: process.terminationStatus, output: String(decoding: output, as: UTF8.self),
                          errors: String(decoding: errors, as: UTF8.self))
        }
    }
}

extension TestServer {
    /// Registers and logs in `name` asking for a login token.
    func remembered(_ name: String) async throws -> (client: ParleyClient, token: String?) {
        let client = try await connect()
        try await client.register(name, password: Self.password)
        let welcome = try await client.login(name, password: Self.password, remember: true)
        _ = try await client.replay()
        return (client, welcome.token)
    }

    var controlSocket: String { server.configuration.controlSocketPath }

    /// `parley admin` against this server; expects success unless `status` says otherwise.
    @discardableResult
    func admin(_ arguments: String..., status: Int32 = 0, sourceLocation: SourceLocation = #_sourceLocation) async throws -> AdminCLI.Result {
        let result = try await AdminCLI.run(socket: controlSocket, arguments)
        #expect(result.status == status, "parley admin \(arguments.joined(separator: " ")): \(result.errors)", sourceLocation: sourceLocation)
        return result
    }
}

@Suite("Operating: parley admin against a running server", .timeLimit(.minutes(3)))
struct AdminTests {
    @Test("online lists each user's sessions with transport, address, since and idle time; stats counts what is stored")
    func onlineAndStats() async throws {
        let t = try await TestServer.start()
        defer { t.removeData() }
        let alice = try await t.user("alice")
        let alice2 = try await t.connect()
        try await alice2.login("alice", password: TestServer.password)
        _ = try await alice2.replay()
        let bob = try await t.user("bob")
        _ = try await alice.send("hello")
        let online = try await t.admin("--json", "online")
        let users = try #require(online.json as? [[String: Any]])
        #expect(users.map { $0["user"] as? String } == ["alice", "bob"])
        let sessions = try #require(users[0]["sessions"] as? [[String: Any]])
        #expect(sessions.count == 2)
        #expect(sessions.allSatisfy { $0["transport"] as? String == "native" && $0["address"] as? String == "127.0.0.1" && $0["idle"] is Int })
        let text = try await t.admin("online")
        #expect(text.output.contains("2 users online") && text.output.contains("native from 127.0.0.1"))
        let stats = try #require(try await t.admin("--json", "stats").json as? [String: Any])
        #expect(stats["accounts"] as? Int == 2)
        #expect(stats["usersOnline"] as? Int == 2)
        #expect(stats["sessions"] as? Int == 3)
        #expect(stats["messages"] as? Int == 1)
        #expect((stats["connections"] as? [String: Int])?["native"] == 3)
        #expect((stats["databaseBytes"] as? Int ?? 0) > 0)
        #expect(stats["version"] as? String == ParleyServer.version)
        for c in [alice, alice2, bob] { await c.close() }
        await t.stop()
    }

    @Test("kick closes every session of the user, telling each who did it and why; kicking someone offline fails with one line")
    func kick() async throws {
        let t = try await TestServer.start()
        defer { t.removeData() }
        let alice = try await t.user("alice")
        let alice2 = try await t.connect()
        try await alice2.login("alice", password: TestServer.password)
        let bob = try await t.user("bob")
        try await t.admin("--by", "mallory", "kick", "alice", "flooding", "the", "room")
        for client in [alice, alice2] {
            let event = try await client.next("the kick") { if case .error = $0 { true } else { false } }
            guard case .error(let error) = event else { Issue.record("no error"); return }
            #expect(error.code == .kicked)
            #expect(error.by == "mallory" && error.reason == "flooding the room")
            #expect(error.message == "you were kicked by mallory: flooding the room")
            try await client.waitForClose()
        }
        #expect(bob.isActive)
        let offline = try await t.admin("kick", "alice", status: 1)
        #expect(offline.errors == "parley admin: no one named 'alice' is online\n")
        // A kick is not a ban: alice may come back.
        let back = try await t.connect()
        try await back.login("alice", password: TestServer.password)
        for c in [back, bob] { await c.close() }
        await t.stop()
    }

    @Test("a ban closes the live sessions and refuses logins on both transports, with reason and end; it survives a restart; unban lifts it")
    func ban() async throws {
        var t = try await TestServer.start { $0.httpPort = 0 }
        let directory = t.directory
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let alice = try await t.remembered("alice")
        let token = try #require(alice.token)
        try await t.register("bob")
        try await t.admin("--by", "ops", "ban", "alice", "--for", "2h", "spam")
        let event = try await alice.client.next("the ban") { if case .error = $0 { true } else { false } }
        guard case .error(let live) = event else { Issue.record("no error"); return }
        #expect(live.code == .banned && live.reason == "spam" && live.by == "ops")
        let until = try #require(live.until)
        let end = try #require(ISO8601DateFormatter.withFractions.date(from: until))
        #expect(abs(end.timeIntervalSinceNow - 7200) < 60)
        try await alice.client.waitForClose()

        for restarted in [false, true] {
            if restarted {
                let port = t.port
                await t.stop()
                t = try await TestServer.restart(directory: directory, port: port) { $0.httpPort = 0 }
            }
            let httpPort = try #require(t.server.port(of: "http"))
            for webSocket in [false, true] {
                let client = try await ParleyClient.connect(host: "127.0.0.1", port: webSocket ? httpPort : t.port, webSocket: webSocket)
                await expectBanned { try await client.login("alice", password: TestServer.password) }
                await client.close()
            }
            let byToken = try await t.connect()
            await expectBanned { try await byToken.login("alice", token: token) }
            await byToken.close()
            let bans = try #require(try await t.admin("--json", "bans").json as? [[String: Any]])
            #expect(bans.count == 1 && bans[0]["target"] as? String == "alice" && bans[0]["reason"] as? String == "spam" && bans[0]["until"] as? String == until)
        }
        // Others are not affected.
        let bob = try await t.user("bob", register: false)
        try await t.admin("unban", "alice")
        let again = try await t.connect()
        try await again.login("alice", password: TestServer.password)
        try await t.admin("unban", "alice", status: 1)
        // A ban without end says so.
        try await t.admin("ban", "bob")
        let event2 = try await bob.next("bob's ban") { if case .error = $0 { true } else { false } }
        guard case .error(let forever) = event2 else { return }
        #expect(forever.code == .banned && forever.until == nil && forever.message == "this account is banned")
        let missing = try await t.admin("ban", "nobody", status: 1)
        #expect(missing.errors.contains("no account named 'nobody'"))
        await again.close()
        await t.stop()
    }

    @Test("ban --address refuses connections from the range, and closes those open; other addresses are served")
    func addressBan() async throws {
        let t = try await TestServer.start()
        defer { t.removeData() }
        let inside = try await t.connect(from: "127.0.0.2")
        try await inside.register("alice", password: TestServer.password)
        try await inside.login("alice", password: TestServer.password)
        try await t.admin("ban", "--address", "127.0.0.2/32", "--for", "1h", "abuse")
        let event = try await inside.next("the ban") { if case .error = $0 { true } else { false } }
        guard case .error(let error) = event else { return }
        #expect(error.code == .banned && error.message.hasPrefix("connections from your address are refused until "))
        try await inside.waitForClose()
        await expectBanned { _ = try await t.connect(from: "127.0.0.2") }
        let outside = try await t.connect(from: "127.0.0.3")
        try await outside.login("alice", password: TestServer.password)
        try await t.admin("unban", "--address", "127.0.0.2")
        let back = try await t.connect(from: "127.0.0.2")
        let bad = try await t.admin("ban", "--address", "300.1.2.3/8", status: 1)
        #expect(bad.errors.contains("not an address or CIDR range"))
        for c in [outside, back] { await c.close() }
        await t.stop()
    }

    @Test("notice reaches everyone online as a system notice; motd is sent after welcome, can be changed, and survives a restart")
    func noticeAndMOTD() async throws {
        var t = try await TestServer.start()
        let directory = t.directory
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let alice = try await t.connect()
        try await alice.register("alice", password: TestServer.password)
        try await alice.login("alice", password: TestServer.password)
        let motd = try await alice.next("the motd") { if case .motd = $0 { true } else { false } }
        #expect(motd == .motd(text: "Welcome to the chat :)"))
        let bob = try await t.user("bob")
        try await t.admin("--by", "ops", "notice", "maintenance at 22:00")
        for client in [alice, bob] {
            let notice = try await client.next("the notice") { if case .notice = $0 { true } else { false } }
            #expect(notice == .notice(text: "maintenance at 22:00", by: "ops"))
        }
        let set = try await t.admin("motd", "Be kind.")
        #expect(set.output == "welcome message: Be kind.\n")
        let port = t.port
        await alice.close()
        await bob.close()
        await t.stop()
        t = try await TestServer.restart(directory: directory, port: port)
        let carol = try await t.connect()
        try await carol.register("carol", password: TestServer.password)
        try await carol.login("carol", password: TestServer.password)
        #expect(try await carol.next("the motd") { if case .motd = $0 { true } else { false } } == .motd(text: "Be kind."))
        try await t.admin("motd", "--reset")
        #expect(try await t.admin("motd").output == "welcome message: Welcome to the chat :)\n")
        await carol.close()
        await t.stop()
    }

    @Test("delete-history deletes exactly what it names, asks first, and leaves replays and history consistent")
    func deleteHistory() async throws {
        let t = try await TestServer.start()
        defer { t.removeData() }
        let alice = try await t.user("alice")
        let bob = try await t.user("bob")
        _ = try await alice.request(.group(.create(group: "team", inviteOnly: false)))
        _ = try await bob.request(.group(.join(group: "team")))
        for i in 1...3 {
            _ = try await alice.send("general \(i)")
            _ = try await alice.send("team \(i)", in: "team")
            _ = try await alice.send("private \(i)", to: "bob")
        }
        func count(_ target: Target) async throws -> Int {
            try await alice.request(.history(target, before: nil, limit: 100)).messages?.count ?? -1
        }
        // Without a terminal to ask and without --yes: nothing happens.
        let unconfirmed = try await t.admin("delete-history", "--conversation", "team", status: 1)
        #expect(unconfirmed.errors.contains("Delete 3 messages (in team)?") && unconfirmed.errors.contains("add --yes"))
        #expect(try await count(.room("team")) == 3)
        let deleted = try await t.admin("delete-history", "--conversation", "team", "--yes")
        #expect(deleted.output == "deleted 3 messages (in team)\n")
        #expect(try await count(.room("team")) == 0)
        #expect(try await count(.room("general")) == 3)
        #expect(try await count(.with("bob")) == 3)
        let pair = try await t.admin("--json", "delete-history", "--conversation", "bob,alice", "--yes")
        #expect((pair.json as? [String: Any])?["deleted"] as? Int == 3)
        #expect(try await count(.with("bob")) == 0)
        #expect(try await count(.room("general")) == 3)
        // --before a time: only what is older goes.
        let cut = ISO8601DateFormatter().string(from: Date().addingTimeInterval(1))
        try await Task.sleep(for: .milliseconds(1100))
        _ = try await alice.send("general later")
        try await t.admin("delete-history", "--before", cut, "--yes")
        let left = try await alice.request(.history(.room("general"), before: nil, limit: 100)).messages ?? []
        #expect(left.map(\.text) == ["general later"])
        // The group, its members and the accounts are untouched; sending goes on.
        #expect(try await bob.send("still here", in: "team").text == "still here")
        // A user who logs in later replays only what is left.
        let carol = try await t.user("carol")
        await carol.close()
        let all = try await t.admin("--json", "delete-history", "--yes")
        #expect((all.json as? [String: Any])?["deleted"] as? Int == 2)
        #expect(try await t.server.storage.messageCount() == 0)
        let unknown = try await t.admin("delete-history", "--conversation", "nowhere", "--yes", status: 1)
        #expect(unknown.errors.contains("no conversation 'nowhere'"))
        for c in [alice, bob] { await c.close() }
        await t.stop()
    }

    @Test("export streams what is stored, as a transcript or JSON lines, by conversation and date, to standard output or a file")
    func export() async throws {
        let t = try await TestServer.start()
        defer { t.removeData() }
        let alice = try await t.user("alice")
        _ = try await t.user("bob")
        var sent: [WireMessage] = []
        for i in 1...1_203 { sent.append(try await alice.send("message \(i)")) }
        sent.append(try await alice.send("line one\nline two", to: "bob"))
        let jsonl = try await t.admin("export", "--format", "jsonl")
        let lines = jsonl.output.split(separator: "\n")
        #expect(lines.count == sent.count)
        let decoded = try lines.map { try JSONDecoder().decode(WireMessage.self, from: Data($0.utf8)) }
        #expect(decoded == sent.map { var m = $0; m.replay = nil; return m })
        let general = try await t.admin("export", "--conversation", "general")
        #expect(general.output.split(separator: "\n").count == 1_203)
        #expect(general.output.hasPrefix("\(sent[0].time) #general alice: message 1\n"))
        let today = String(sent[0].time.prefix(10))
        let file = t.directory + "/export.txt"
        let toFile = try await t.admin("export", "--date", today, "--output", file)
        #expect(toFile.output == "exported 1204 messages to \(file)\n")
        let transcript = try String(contentsOfFile: file, encoding: .utf8)
        #expect(transcript.hasSuffix("@bob alice: line one\n    line two\n"))
        // Text that could drive a terminal is shown escaped (the server refuses it in messages; names and old data too).
        #expect(ParleyServer.printable("red \u{1B}[31m\u{9B}") == "red \\u{1b}[31m\\u{9b}")
        let none = try await t.admin("export", "--date", "2001-01-01")
        #expect(none.output.isEmpty)
        await alice.close()
        await t.stop()
    }

    @Test("a backup taken while messages flow holds every message acknowledged before it began, passes the integrity check, and a server starts on it")
    func backupWhileMessagesFlow() async throws {
        let t = try await TestServer.start()
        defer { t.removeData() }
        let alice = try await t.user("alice")
        for i in 1...500 { _ = try await alice.send("before \(i)") }
        let acknowledged = Locked<[Int64]>([])
        let stop = Locked(false)
        let writer = Task {
            var i = 0
            while !stop.withLock({ $0 }) {
                i += 1
                let m = try await alice.send("during \(i)")
                acknowledged.withLock { $0.append(m.messageId) }
            }
        }
        try await eventually("messages flowing") { acknowledged.withLock { $0.count } > 20 }
        let before = acknowledged.withLock { $0.last! }
        let restored = NSTemporaryDirectory() + "parley-restored-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: restored, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: restored) }
        let copy = restored + "/parley.sqlite"
        let result = try await t.admin("backup", copy)
        #expect(result.output.hasPrefix("backup written to \(copy)"))
        try await eventually("more messages after the backup") { acknowledged.withLock { $0.last! } > before + 20 }
        stop.withLock { $0 = true }
        try await writer.value
        let queue = try DatabaseQueue(path: copy)
        let (integrity, ids) = try await queue.read { db in
            (try String.fetchOne(db, sql: "PRAGMA integrity_check"), try Int64.fetchSet(db, sql: "SELECT id FROM message"))
        }
        try queue.close()
        #expect(integrity == "ok")
        #expect(ids.count >= 500 + 20)
        #expect((1...before).allSatisfy { ids.contains($0) }, "every message acknowledged before the backup began is in it")
        let exists = try await t.admin("backup", copy, status: 1)
        #expect(exists.errors.contains("failed"))
        await alice.close()
        await t.stop()
        // A server on the restored copy has it all.
        let r = try await TestServer.start(directory: restored)
        let reader = try await r.user("alice", register: false)
        let newest = try await reader.request(.history(.room("general"), before: before + 1, limit: 1)).messages ?? []
        #expect(newest.map(\.messageId) == [before])
        await reader.close()
        await r.stop()
    }

    @Test("reset-password sets the new password, revokes login tokens and closes the sessions")
    func resetPassword() async throws {
        let t = try await TestServer.start()
        defer { t.removeData() }
        let alice = try await t.remembered("alice")
        let token = try #require(alice.token)
        try await t.admin("reset-password", "alice", "--password", "a brand new secret")
        let event = try await alice.client.next("closed") { if case .error = $0 { true } else { false } }
        #expect((event == .error(ParleyError(.loggedOut, "your password was reset by the operator; log in with the new one"))))
        let old = try await t.connect()
        await expectError(.invalidCredentials) { try await old.login("alice", password: TestServer.password) }
        let byToken = try await t.connect()
        await expectError(.invalidCredentials) { try await byToken.login("alice", token: token) }
        let fresh = try await t.connect()
        try await fresh.login("alice", password: "a brand new secret")
        // Without a password and without a terminal, one is made and shown once.
        let generated = try await t.admin("--json", "reset-password", "alice")
        let password = try #require((generated.json as? [String: Any])?["password"] as? String)
        #expect(password.count == 20)
        let again = try await t.connect()
        try await again.login("alice", password: password)
        for c in [old, byToken, fresh, again] { await c.close() }
        await t.stop()
    }

    @Test("shutdown stops the server gracefully: clients are told")
    func shutdown() async throws {
        let t = try await TestServer.start()
        defer { t.removeData() }
        let alice = try await t.user("alice")
        try await t.admin("shutdown")
        let event = try await alice.next("the shutdown notice") { if case .shutdown = $0 { true } else { false } }
        #expect(event == .shutdown(message: "the server is shutting down"))
        try await alice.waitForClose()
        try await eventually("the control socket removed") { !FileManager.default.fileExists(atPath: t.controlSocket) }
    }

    @Test("the control socket is private (0600), a stale one is replaced, a live one is not taken over, and mistakes get one line and status 1")
    func controlSocket() async throws {
        let t = try await TestServer.start()
        defer { t.removeData() }
        let attributes = try FileManager.default.attributesOfItem(atPath: t.controlSocket)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        // Another server on the same data directory is refused, naming the socket.
        await #expect(throws: (any Error).self) { _ = try await TestServer.start(directory: t.directory) }
        // Another OS user may not use it (root passes permission checks, so the test drops to nobody).
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), geteuid() == 0 {
            let denied = try await AdminCLI.run(socket: t.controlSocket, ["stats"], asUser: 65534)
            #expect(denied.status == 1)
            #expect(denied.errors.contains("not allowed to open the control socket"), "\(denied.errors)")
        }
        let unknown = try await t.admin("frobnicate", status: 1)
        #expect(unknown.errors == "parley admin: unknown command 'frobnicate'; type help\n")
        await t.stop()
        // No server: one line, status 1.
        let none = try await AdminCLI.run(socket: t.controlSocket, ["stats"])
        #expect(none.status == 1 && none.errors.split(separator: "\n").count == 1 && none.errors.contains("no parley server is running"))
        // A socket file left by a crash (bound, never removed) does not stop the next start.
        try staleUnixSocket(at: t.controlSocket)
        #expect(FileManager.default.fileExists(atPath: t.controlSocket))
        let next = try await TestServer.start(directory: t.directory)
        let stats = try await next.admin("stats")
        #expect(stats.output.contains("accounts: 0"))
        await next.stop()
    }
}

@Suite("Operating: what the review of parley admin found", .timeLimit(.minutes(2)))
struct AdminReviewTests {
    @Test("a ban for longer than 100 years is refused with one line, and the server goes on (it used to crash on the overflow)")
    func hugeDuration() async throws {
        let t = try await TestServer.start()
        defer { t.removeData() }
        try await t.register("bob")
        let huge = try await t.admin("ban", "bob", "--for", "99999999999999999w", status: 1)
        #expect(huge.errors.contains("longer than 100 years"))
        let address = try await t.admin("ban", "--address", "10.0.0.0/8", "--for", "99999999999999999w", status: 1)
        #expect(address.errors.contains("longer than 100 years"))
        #expect(try await t.admin("stats").output.contains("accounts: 1"))
        await t.stop()
    }

    @Test("export --output never replaces what exists: a file, a folder, the database")
    func exportNeverReplaces() async throws {
        let t = try await TestServer.start()
        defer { t.removeData() }
        let alice = try await t.user("alice")
        _ = try await alice.send("hello")
        let folder = t.directory + "/folder"
        try FileManager.default.createDirectory(atPath: folder + "/sub", withIntermediateDirectories: true)
        try "precious".write(toFile: folder + "/sub/file", atomically: true, encoding: .utf8)
        for path in [folder, t.directory + "/parley.sqlite", folder + "/sub/file"] {
            let refused = try await t.admin("export", "--output", path, status: 1)
            #expect(refused.errors.contains("exists"), "\(refused.errors)")
        }
        #expect(try String(contentsOfFile: folder + "/sub/file", encoding: .utf8) == "precious")
        #expect(try await t.admin("stats").output.contains("accounts: 1"))
        let fresh = folder + "/new.txt"
        try await t.admin("export", "--output", fresh)
        let mode = try FileManager.default.attributesOfItem(atPath: fresh)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        await alice.close()
        await t.stop()
    }

    @Test("a file at the control socket's path that is not a socket is not deleted: start-up stops, naming it")
    func notASocket() async throws {
        let directory = NSTemporaryDirectory() + "parley-notsock-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let precious = directory + "/important.txt"
        try "keep me".write(toFile: precious, atomically: true, encoding: .utf8)
        await #expect(throws: (any Error).self) {
            _ = try await TestServer.start(directory: directory) { $0.controlSocket = precious }
        }
        #expect(try String(contentsOfFile: precious, encoding: .utf8) == "keep me")
    }
}

/// Leaves a Unix socket file at `path` with nothing listening, as a crashed server would.
func staleUnixSocket(at path: String) throws {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    let bound = UnixSocket.withAddress(path) { bind(fd, $0, $1) }
    #expect(bound == 0)
}

/// Asserts that `body` fails with `BANNED`.
func expectBanned<T>(sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T) async {
    await expectError(.banned, sourceLocation: sourceLocation, body)
}

extension ISO8601DateFormatter {
    static var withFractions: ISO8601DateFormatter {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }
}
