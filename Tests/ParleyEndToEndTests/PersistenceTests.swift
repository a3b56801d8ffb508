import Foundation
import ParleyClient
import ParleyCore
import ParleyStore
import ParleyWire
import Testing

@Suite("End to end: history, replay and restarts", .timeLimit(.minutes(2)))
struct PersistenceTests {
    @Test("history pages backwards; what a user missed is replayed after a restart on the same data")
    func restart() async throws {
        let first = try await TestServer.start()
        defer { first.removeData() }
        let alice = try await first.user("Alice")
        let bob = try await first.user("Bob")
        try await alice.request(.group(.create(group: "club", inviteOnly: true)))
        try await alice.request(.group(.invite(group: "club", user: "bob")))
        try await bob.request(.group(.join(group: "club")))
        var sent: [WireMessage] = []
        for i in 0..<30 { sent.append(try await alice.send("general \(i)")) }
        let lastID = sent.last!.messageId
        _ = try await bob.nextMessage { $0.messageId == lastID }
        await bob.close()
        try await alice.wentOffline("Bob")

        // Bob is offline: these are what he misses.
        let missedGeneral = try await alice.send("while you were away")
        let missedClub = try await alice.send("club news", in: "club")
        let missedPrivate = try await alice.send("call me", to: "bob")
        await alice.close()
        await first.stop()

        let second = try await TestServer.start(directory: first.directory)
        let (bobAgain, replayed) = try await second.login("Bob", register: false)
        #expect(replayed.map(\.messageId) == [missedGeneral.messageId, missedClub.messageId, missedPrivate.messageId])
        #expect(replayed.allSatisfy { $0.replay == true })
        #expect(replayed[1].room == "club")
        #expect(replayed[2].to == "Bob")

        // Groups, owners, members and invitation state survived.
        let members = try await bobAgain.request(.groupMembers(group: "club"))
        #expect(members.owner == "Alice")
        #expect(members.inviteOnly == true)
        #expect(members.members?.map(\.username) == ["Alice", "Bob"])

        // History pages backwards, newest last, with `more` while older messages exist.
        let page1 = try await bobAgain.request(.history(.room("general"), before: nil, limit: 10))
        #expect(page1.messages?.map(\.messageId) == (sent.suffix(9) + [missedGeneral]).map(\.messageId))
        #expect(page1.more == true)
        let page2 = try await bobAgain.request(.history(.room("general"), before: page1.messages!.first!.messageId, limit: 200))
        #expect(page2.messages?.map(\.text) == (0..<21).map { "general \($0)" })
        #expect(page2.more == false)
        let direct = try await bobAgain.request(.history(.with("ALICE"), before: nil, limit: nil))
        #expect(direct.with == "Alice")
        #expect(direct.messages?.map(\.text) == ["call me"])
        await expectError(.badRequest) { try await bobAgain.request(.history(.room("general"), before: nil, limit: 201)) }

        // A user who was online for everything gets no replay.
        let (_, aliceReplay) = try await second.login("Alice", register: false)
        #expect(aliceReplay.isEmpty)

        // New messages continue the id sequence.
        let after = try await bobAgain.send("back again")
        #expect(after.messageId > missedPrivate.messageId)
        await bobAgain.close()
        await second.stop()
    }

    @Test("a client that says what it has seen (`since`) gets everything after it, even what the server already wrote to it")
    func since() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let alice = try await s.user("Alice")
        let bob = try await s.user("Bob")
        var sent: [WireMessage] = []
        for i in 0..<5 { sent.append(try await alice.send("s\(i)")) }
        let lastID = sent.last!.messageId
        _ = try await bob.nextMessage { $0.messageId == lastID }
        await bob.close()
        try await alice.wentOffline("Bob")
        // Bob's client only showed the first two before it went away.
        let again = try await s.connect()
        try await again.login("Bob", password: TestServer.password, since: sent[1].messageId)
        let replayed = try await again.replay()
        #expect(replayed.map(\.messageId) == sent.dropFirst(2).map(\.messageId))
        // Without `since`, the server's record says Bob was sent everything.
        await again.close()
        try await alice.wentOffline("Bob")
        let (_, none) = try await s.login("Bob", register: false)
        #expect(none.isEmpty)
        await alice.close()
        await s.stop()
    }

    @Test("the replay is capped per conversation")
    func replayCap() async throws {
        let s = try await TestServer.start { $0.limits.replayLimit = 5 }
        defer { s.removeData() }
        let alice = try await s.user("Alice")
        let bob = try await s.connect()
        try await bob.register("Bob", password: TestServer.password)
        await bob.close()
        var general: [WireMessage] = []
        var direct: [WireMessage] = []
        for i in 0..<8 {
            general.append(try await alice.send("g\(i)"))
            direct.append(try await alice.send("d\(i)", to: "bob"))
        }
        let (_, replayed) = try await s.login("Bob", register: false)
        let expected = (general.suffix(5) + direct.suffix(5)).map(\.messageId).sorted()
        #expect(replayed.map(\.messageId) == expected)
        await alice.close()
        await s.stop()
    }

    @Test("graceful shutdown tells clients and keeps every acknowledged message")
    func shutdown() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let alice = try await s.user("Alice")
        let bob = try await s.user("Bob")
        // Pipeline many sends, wait for the last acknowledgement, then stop at once.
        for i in 0..<200 { try alice.send(.send(.room("general"), text: "burst \(i)"), id: .string("b\(i)")) }
        let last = try await alice.nextFrame("the last acknowledgement") { $0.id == .string("b199") }
        #expect(last.type == "message")
        await s.stop()
        let notice = try await bob.nextFrame("the shutdown notice") { $0.type == "shutdown" }
        #expect(notice.message == "the server is shutting down")
        try await bob.waitForClose()
        try await alice.waitForClose()
        let store = try SQLiteStore(directory: s.directory)
        #expect(try store.messageCount() == 200)
        store.close()
    }
}
