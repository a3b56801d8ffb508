import Foundation
import NIOPosix
import ParleyClient
import ParleyCore
import ParleyWire
import Testing

@Suite("End to end: log files of the parley executable", .timeLimit(.minutes(2)))
struct LogFileProcessTests {
    /// Starts `parley serve` at `info` with `--log-dir` (and more `arguments`), standard error to
    /// `errors`; returns it with its native port.
    static func serve(data: String, logs: String, errors: Pipe, arguments: [String] = []) async throws -> (Process, Int) {
        let (process, port, _) = try await ProcessTests.serve(directory: data, errors: errors, logLevel: "info", arguments: ["--log-dir", logs] + arguments)
        return (process, port)
    }

    /// Stops the server (SIGTERM) and returns what it wrote to standard error and to its log
    /// files (every file of the folder, in name order).
    static func stop(_ process: Process, errors: Pipe, logs: String) async throws -> (standardError: String, files: [String: String]) {
        process.terminate()
        let standardError = try await onOwnThread { () -> String in
            process.waitUntilExit()
            return String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        }
        var files: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: logs) {
            files[name] = try String(contentsOfFile: (logs as NSString).appendingPathComponent(name), encoding: .utf8)
        }
        return (standardError, files)
    }

    @Test("a full session at info (register, password and token logins, messages, a group, a failed login) is in today's log file: connections, logins, failures; never a password, a token or message text")
    func fullSession() async throws {
        let directory = NSTemporaryDirectory() + "parley-logfile-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let logs = directory + "/logs"
        let errors = Pipe()
        let (process, port) = try await Self.serve(data: directory + "/data", logs: logs, errors: errors)
        defer { if process.isRunning { process.terminate() } }
        let group = MultiThreadedEventLoopGroup.singleton
        // Every secret is unique, so finding it anywhere in a log is certain.
        let password = "pw-\(UUID().uuidString)"
        let bobPassword = "pw-\(UUID().uuidString)"
        let wrongPassword = "wrong-\(UUID().uuidString)"
        let texts = (0..<4).map { "text-\($0)-\(UUID().uuidString)" }

        let alice = try await ParleyClient.connect(host: "127.0.0.1", port: port, group: group)
        try await alice.register("alice", password: password)
        let welcome = try await alice.login("alice", password: password, remember: true)
        let token = try #require(welcome.token)
        _ = try await alice.replay()
        let bob = try await ParleyClient.connect(host: "127.0.0.1", port: port, group: group)
        try await bob.register("bob", password: bobPassword)
        try await bob.login("bob", password: bobPassword)
        _ = try await bob.replay()
        _ = try await alice.send(texts[0])
        _ = try await alice.send(texts[1], to: "bob")
        _ = try await alice.request(.group(.create(group: "devs", inviteOnly: false)))
        _ = try await alice.send(texts[2], in: "devs")
        let intruder = try await ParleyClient.connect(host: "127.0.0.1", port: port, group: group)
        await expectError(.invalidCredentials) { try await intruder.login("bob", password: wrongPassword) }
        let forged: String = (token.first == "A" ? "B" : "A") + token.dropFirst()
        await expectError(.invalidCredentials) { try await intruder.login("alice", token: forged) }
        await intruder.close()
        await alice.close()
        // A token login, and a message from it.
        let again = try await ParleyClient.connect(host: "127.0.0.1", port: port, group: group)
        try await again.login("alice", token: token)
        _ = try await again.replay()
        _ = try await again.send(texts[3])
        _ = try await bob.nextMessage { $0.text == texts[3] }
        await again.close()
        await bob.close()

        let (standardError, files) = try await Self.stop(process, errors: errors, logs: logs)
        #expect(files.keys.allSatisfy { $0.wholeMatch(of: /parley-\d{4}-\d{2}-\d{2}\.log/) != nil }, "\(files.keys)")
        let today = Timestamp(milliseconds: Int64(Date().timeIntervalSince1970 * 1000)).iso8601.prefix(10)
        #expect(files.keys.contains("parley-\(today).log") || files.count == 2, "today's file, or yesterday's and today's at midnight")
        let log = files.keys.sorted().map { files[$0]! }.joined()
        for line in log.split(separator: "\n") {
            #expect(line.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (trace|debug|info|notice|warning|error|critical) [^ :]+: .*/) != nil,
                    "a text line: \(line)")
        }
        #expect(log.contains(/info parley: connected .*transport=native/))
        #expect(log.contains(/info parley: registered .*user=alice/))
        #expect(log.contains(/info parley: logged in .*address=127\.0\.0\.1.*user=alice/))
        #expect(log.contains(/info parley: login failed .*method=password .*reason=INVALID_CREDENTIALS .*user=bob/))
        #expect(log.contains(/info parley: login failed .*method=token .*reason=INVALID_CREDENTIALS .*user=alice/))
        #expect(log.contains(/info parley: group changed .*change=create .*group=devs .*user=alice/))
        #expect(log.contains(/info parley: disconnected .*reason="closed by the client"/))
        #expect(log.contains("listening"))
        for (where_, text) in [("the log file", log), ("standard error", standardError)] {
            #expect(!text.isEmpty, "\(where_) is not empty")
            for secret in [password, bobPassword, wrongPassword, token] + texts {
                #expect(!text.contains(secret), "\(where_) holds a password, token or message text: \(secret)")
            }
            #expect(!text.contains(String(token.prefix(12))), "\(where_) holds part of the token")
        }
        // Standard error carries the same lines.
        #expect(standardError.contains("login failed"))
    }

    @Test("--log-format json: every line of the file is one JSON object with time, level, label, message and metadata")
    func jsonLines() async throws {
        let directory = NSTemporaryDirectory() + "parley-logfile-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let logs = directory + "/logs"
        let errors = Pipe()
        let (process, port) = try await Self.serve(data: directory + "/data", logs: logs, errors: errors, arguments: ["--log-format", "json"])
        defer { if process.isRunning { process.terminate() } }
        let client = try await ParleyClient.connect(host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton)
        await expectError(.invalidCredentials) { try await client.login("nobody", password: "whatever1") }
        try await client.register("carol", password: "whatever1")
        await client.close()
        let (_, files) = try await Self.stop(process, errors: errors, logs: logs)
        let lines = files.values.joined().split(separator: "\n")
        #expect(lines.count >= 4)
        var messages: [String] = []
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            #expect(Set(object.keys) == ["time", "level", "label", "message", "metadata"], "\(line)")
            #expect((object["time"] as? String)?.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil)
            #expect(object["metadata"] is [String: Any])
            messages.append(object["message"] as? String ?? "")
        }
        #expect(messages.contains("connected"))
        #expect(messages.contains("registered"))
        #expect(messages.contains("login failed"))
    }
}
