import Foundation
import ParleyClient
import ParleyCore
import ParleyTestSupport
import ParleyWire
import Testing

@Suite("End to end: one identity per name", .timeLimit(.minutes(1)))
struct IdentityTests {
    @Test("a name being registered is reserved: a guest asking for it meanwhile gets another, and never the account's private messages")
    func registerGuestRace() async throws {
        let directory = NSTemporaryDirectory() + "parley-race-" + UUID().uuidString
        let store = try FailingStore(directory: directory)
        let s = try await TestServer.start(directory: directory, storage: store) { $0.guests = true }
        defer { s.removeData() }
        let dave = try await s.user("Dave")
        // A registers carol; the store holds the account's creation until the test says so.
        store.gateAccounts.store(true, ordering: .relaxed)
        let a = try await s.connect()
        let registering = Task { try await a.register("carol", password: TestServer.password) }
        var entered = store.accountEntered.makeAsyncIterator()
        #expect(await entered.next() == "carol")
        // Meanwhile B asks to be the guest carol.
        let b = try await s.connect()
        let guest = try await b.guest("carol")
        #expect(guest.username != "carol", "the name is reserved while it is being registered")
        store.gateAccounts.store(false, ordering: .relaxed)
        store.releaseAccounts()
        #expect(try await registering.value.result == "REGISTER_SUCCESS")
        // dave writes to the account carol: the guest never sees it; the account does at login.
        let sent = try await dave.send("for the account", to: "carol")
        _ = try await b.nextFrame { $0.type == "replay_end" }
        let (carol, replayed) = try await s.login("carol", register: false)
        #expect(replayed.map(\.messageId) == [sent.messageId])
        let marker = try await dave.send("marker")
        _ = try await b.nextMessage { $0.messageId == marker.messageId }
        #expect(!b.pendingEvents.contains { $0.message?.text == "for the account" })
        await carol.close()
        await a.close()
        await b.close()
        await dave.close()
        await s.stop()
    }

    @Test("a guest online under an account's name never receives that account's private messages")
    func guestNeverGetsAccountMail() async throws {
        let s = try await TestServer.start { $0.guests = true }
        defer { s.removeData() }
        let dave = try await s.user("Dave")
        let guest = try await s.connect()
        #expect(try await guest.guest("erin").username == "erin")
        _ = try await guest.nextFrame { $0.type == "replay_end" }
        // While the guest erin is online, the account erin cannot be registered...
        let other = try await s.connect()
        await expectError(.usernameExists) { try await other.register("erin", password: TestServer.password) }
        // ...and dave's message to erin goes to the guest (the only erin), stored under the guest's key.
        let toGuest = try await dave.send("hi guest", to: "erin")
        #expect(try await guest.nextMessage { $0.messageId == toGuest.messageId }.text == "hi guest")
        await guest.close()
        await other.close()
        await dave.close()
        await s.stop()
    }
}
