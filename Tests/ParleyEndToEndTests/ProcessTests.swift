import Foundation
import NIOPosix
import ParleyClient
import ParleyStore
import Testing

@Suite("End to end: the parley executable", .timeLimit(.minutes(2)))
struct ProcessTests {
    /// The `parley` executable built next to this test bundle.
    static var executable: URL {
        URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("parley")
    }

    @Test("parley serve prints where it listens, serves, and on SIGTERM tells clients, stores everything and exits 0")
    func serveAndTerminate() async throws {
        let directory = NSTemporaryDirectory() + "parley-process-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = Process()
        process.executableURL = Self.executable
        process.arguments = ["serve", "--port", "0", "--data-dir", directory, "--bcrypt-cost", "4", "--log-level", "warning"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        defer { if process.isRunning { process.terminate() } }

        // The first line says where it listens.
        let line = try await Task.detached { () -> String in
            var text = ""
            while !text.contains("\n") {
                let data = output.fileHandleForReading.availableData
                if data.isEmpty { break }
                text += String(decoding: data, as: UTF8.self)
            }
            return text
        }.value
        let match = try #require(line.firstMatch(of: /listening on 127\.0\.0\.1:(\d+)/))
        let port = try #require(Int(match.1))

        let client = try await ParleyClient.connect(host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton)
        try await client.register("Alice", password: TestServer.password)
        // Without acknowledgements, what the server wrote counts as received.
        try await client.login("Alice", password: TestServer.password, ack: false)
        for i in 0..<100 { try client.send(.send(.room("general"), text: "m\(i)"), id: .int(Int64(i))) }
        _ = try await client.nextFrame("the last acknowledgement") { $0.id == .int(99) }

        kill(process.processIdentifier, SIGTERM)
        let notice = try await client.nextFrame("the shutdown notice") { $0.type == "shutdown" }
        #expect(notice.message == "the server is shutting down")
        try await client.waitForClose()
        let status = try await Task.detached { () -> Int32 in
            process.waitUntilExit()
            return process.terminationStatus
        }.value
        #expect(status == 0)
        #expect(process.terminationReason == .exit)
        let store = try SQLiteStore(directory: directory)
        #expect(try store.messageCount() == 100)
        #expect(try store.account("alice")?.passwordHash.hasPrefix("$2") == true)
        #expect(try store.account("alice")?.readPosition == 100)
        store.close()
        await client.close()
    }
}
