import Foundation
import ParleyClient
import ParleyCore
import ParleyWire
import Testing

@Suite("End to end: presence that scales", .timeLimit(.minutes(1)))
struct PresenceTests {
    @Test("below the limit everyone hears of everyone; above it the count, followed users and nobody else")
    func aboveAndBelow() async throws {
        let s = try await TestServer.start { $0.presenceThreshold = 3 }
        defer { s.removeData() }
        let alice = try await s.user("Alice")
        #expect(alice.hello.presenceLimit == 3)
        let bob = try await s.user("Bob")
        #expect(try await alice.presence(of: "Bob") == true)
        let dave = try await s.connect()
        try await dave.register("Dave", password: TestServer.password)
        await dave.close()
        // Alice follows Dave, who is offline.
        let followed = try await alice.request(.follow(["dave"]))
        #expect(followed.changes == [PresenceChange(username: "Dave", online: false)])
        await expectError(.userNotFound) { try await alice.request(.follow(["nobody"])) }

        // Carol makes three: the server says it no longer tells everyone of everyone.
        let (carol, _) = try await s.login("Carol")
        for client in [alice, bob] {
            let count = try await client.next("the online count") { if case .onlineCount = $0 { true } else { false } }
            #expect(count == .onlineCount(3, everyone: false))
        }
        #expect(try await carol.next("carol's snapshot") { $0.presenceChanges != nil } == .presence([], snapshot: true))
        _ = try await carol.next("carol's count") { if case .onlineCount(3, false) = $0 { true } else { false } }

        // Dave comes: Alice follows him and is told; Bob is not (a marker after it proves it).
        let (daveAgain, _) = try await s.login("Dave", register: false)
        #expect(try await alice.presence(of: "Dave") == true)
        let marker = try await carol.send("marker")
        _ = try await bob.nextMessage { $0.messageId == marker.messageId }
        #expect(!bob.pendingEvents.compactMap(\.presenceChanges).joined().contains { $0.username == "Dave" })

        // Who is online, paged.
        let first = try await bob.request(.who(limit: 2))
        #expect(first.users == ["Alice", "Bob"] && first.more == true && first.count == 4)
        let rest = try await bob.request(.who(after: "Bob", limit: 2))
        #expect(rest.users == ["Carol", "Dave"] && rest.more == false)

        // Back under the limit: everyone gets the whole list again.
        await daveAgain.close()
        await carol.close()
        let snapshot = try await bob.next("the snapshot") { if case .presence(_, true) = $0 { true } else { false } }
        #expect(snapshot == .presence([PresenceChange(username: "Alice", online: true), PresenceChange(username: "Bob", online: true)], snapshot: true))
        await alice.close()
        await bob.close()
        await s.stop()
    }
}
