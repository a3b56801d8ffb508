import Foundation
import ParleyClient
import ParleyCore
import ParleyWire
import Testing

@Suite("End to end: the read position moves only for what a client received", .timeLimit(.minutes(1)))
struct ReadPositionTests {
    @Test("a connection that drops right after login loses none of the missed messages")
    func earlyDrop() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let alice = try await s.user("alice")
        try await s.register("bob")
        var sent: [Int64] = []
        for i in 0..<5 {
            sent.append(try await alice.send("private \(i)", to: "bob").messageId)
            sent.append(try await alice.send("general \(i)").messageId)
        }
        // bob logs in and the connection drops before anything of the replay is read.
        let dropped = try await s.connect()
        try await dropped.login("bob", password: TestServer.password)
        try await dropped.channel.close()
        try await alice.wentOffline("bob")
        // Logging in again replays all ten.
        let (bob, replayed) = try await s.login("bob", register: false)
        #expect(replayed.map(\.messageId) == sent)
        // This time bob took them: they are acknowledged when the client closes, and not again.
        await bob.close()
        try await alice.wentOffline("bob")
        let (again, none) = try await s.login("bob", register: false)
        #expect(none.isEmpty)
        await again.close()
        await alice.close()
        await s.stop()
    }

    @Test("a client that does not acknowledge: what was written to it counts as received")
    func withoutAcknowledgements() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let alice = try await s.user("alice")
        try await s.register("carol")
        let missed = try await alice.send("for carol", to: "carol")
        let plain = try await s.connect()
        try await plain.login("carol", password: TestServer.password, ack: false)
        #expect(try await plain.replay().map(\.messageId) == [missed.messageId])
        let live = try await alice.send("live")
        _ = try await plain.nextMessage { $0.messageId == live.messageId }
        await plain.close()
        try await alice.wentOffline("carol")
        let (carol, replayed) = try await s.login("carol", register: false)
        #expect(replayed.isEmpty, "everything was written to the first connection")
        await carol.close()
        await alice.close()
        await s.stop()
    }

    @Test("read positions are stored as they move, not only when the session ends")
    func storedAsTheyMove() async throws {
        let s = try await TestServer.start { $0.readPositionInterval = 0.2 }
        defer { s.removeData() }
        let alice = try await s.user("alice")
        let (bob, _) = try await s.login("bob")
        var newest: Int64 = 0
        for i in 0..<3 { newest = try await alice.send("m\(i)").messageId }
        let last = newest
        _ = try await bob.nextMessage { $0.messageId == last }
        try await eventually("bob's read position on disk while he is online") {
            try s.server.storage.readPosition(of: "bob") == last
        }
        #expect(bob.isActive)
        await bob.close()
        await alice.close()
        await s.stop()
    }

    @Test("acknowledgements move the read position, never past what was sent")
    func acknowledgements() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let alice = try await s.user("alice")
        // dave's client acknowledges only what the test says (no automatic acknowledgements).
        let dave = try await s.connect()
        try await dave.register("dave", password: TestServer.password)
        try dave.send(.login(username: "dave", credential: .password(TestServer.password), since: nil, remember: false, ack: true), id: .int(1))
        _ = try await dave.nextFrame("welcome") { $0.type == "welcome" }
        _ = try await dave.nextFrame("replay end") { $0.type == "replay_end" }
        let first = try await alice.send("one")
        let second = try await alice.send("two")
        _ = try await dave.nextMessage { $0.messageId == second.messageId }
        // dave acknowledges only the first (as a client that has shown only that one would), far into the future too.
        try dave.send(.ack(through: first.messageId))
        try await dave.channel.close()
        try await alice.wentOffline("dave")
        let (again, replayed) = try await s.login("dave", register: false)
        #expect(replayed.map(\.messageId) == [second.messageId])
        try again.send(.ack(through: 1_000_000))
        try await again.channel.close()
        try await alice.wentOffline("dave")
        let third = try await alice.send("three")
        let (last, more) = try await s.login("dave", register: false)
        #expect(more.map(\.messageId) == [third.messageId], "an acknowledgement past what was sent counts only up to it")
        await last.close()
        await alice.close()
        await s.stop()
    }
}
