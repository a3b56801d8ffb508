import Foundation
import ParleyClient
import ParleyCore
import ParleyStore
import ParleyWire
import Testing

@Suite("End to end: login tokens", .timeLimit(.minutes(1)))
struct LoginTokenTests {
    @Test("remember gives a token; it logs in without the password, across a restart, only as its owner; logout revokes it")
    func tokens() async throws {
        let directory = NSTemporaryDirectory() + "parley-token-" + UUID().uuidString
        var s = try await TestServer.start(directory: directory)
        defer { s.removeData() }
        let alice = try await s.connect()
        try await alice.register("Alice", password: TestServer.password)
        let plain = try await alice.login("alice", password: TestServer.password)
        #expect(plain.token == nil, "no token unless asked")
        await alice.close()
        let remembered = try await s.connect()
        let welcome = try await remembered.login("alice", password: TestServer.password, remember: true)
        let token = try #require(welcome.token)
        #expect(token.count == 43)
        _ = try await remembered.replay()
        let note = try await remembered.send("before the restart")
        await remembered.close()

        // The token survives a restart and logs in without a password; what was missed is replayed.
        await s.stop()
        s = try await TestServer.start(directory: directory)
        let (bob, _) = try await s.login("Bob")
        let missed = try await bob.send("while alice was away")
        let again = try await s.connect()
        let resumed = try await again.login("Alice", token: token, since: note.messageId)
        #expect(resumed.username == "Alice" && resumed.token == nil)
        #expect(try await again.replay().map(\.messageId) == [missed.messageId])

        // Only for its owner, and nothing else guesses it.
        let thief = try await s.connect()
        await expectError(.invalidCredentials) { try await thief.login("bob", token: token) }
        await expectError(.invalidCredentials) { try await thief.login("alice", token: String(repeating: "A", count: 43)) }
        // Logout forgets it.
        _ = try await again.request(.logout())
        try await again.waitForClose()
        await expectError(.invalidCredentials) { try await thief.login("alice", token: token) }
        await thief.close()
        await bob.close()
        await s.stop()
    }
}
