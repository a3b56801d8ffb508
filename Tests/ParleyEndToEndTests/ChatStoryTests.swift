import Foundation
import NIOCore
import ParleyClient
import ParleyCore
import ParleyWire
import Testing

@Suite("End to end: the whole story over real sockets", .timeLimit(.minutes(2)))
struct ChatStoryTests {
    @Test("three users: general room, private messages online and offline, presence and who")
    func generalAndPrivate() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let alice = try await s.user("Alice")
        let bob = try await s.user("Bob")
        #expect(try await alice.presence(of: "Bob") == true)
        let carol = try await s.user("Carol")
        #expect(try await alice.presence(of: "Carol") == true)
        #expect(try await bob.presence(of: "Carol") == true)

        // General: the sender's copy is the acknowledgement, with id and time; everyone else gets it.
        let sent = try await alice.send("hello everyone")
        #expect(sent.messageId > 0)
        #expect(sent.time.hasSuffix("Z"))
        #expect(sent.room == "general")
        for client in [bob, carol] {
            let got = try await client.nextMessage { $0.text == "hello everyone" }
            #expect(got == sent)
        }
        let second = try await bob.send("hi alice")
        #expect(second.messageId > sent.messageId)

        // A private message to an online user reaches only them.
        let whisper = try await bob.send("just you", to: "alice")
        #expect(whisper.to == "Alice")
        #expect(try await alice.nextMessage { $0.text == "just you" }.from == "Bob")
        let marker = try await alice.send("marker")
        #expect(try await carol.nextMessage { $0.messageId >= whisper.messageId }.messageId == marker.messageId)

        // A private message to a registered user who is offline arrives at their next login, as replay.
        let dave = try await s.connect()
        try await dave.register("Dave", password: TestServer.password)
        await dave.close()
        let note = try await alice.send("read this when you are back", to: "dave")
        await expectError(.userNotFound) { try await alice.send("?", to: "nobody") }
        let (daveAgain, replayed) = try await s.login("Dave", register: false)
        #expect(replayed.contains { $0.messageId == note.messageId && $0.text == note.text && $0.replay == true })
        #expect(try await alice.presence(of: "Dave") == true)

        // Who is online.
        let online = try await carol.request(.who()).users
        #expect(online == ["Alice", "Bob", "Carol", "Dave"])

        // Names are unique without regard to case; bad passwords and names have their own codes.
        let eve = try await s.connect()
        await expectError(.usernameExists) { try await eve.register("ALICE", password: TestServer.password) }
        await expectError(.invalidUsername) { try await eve.register("no spaces", password: TestServer.password) }
        await expectError(.passwordTooShort) { try await eve.register("eve", password: "short") }
        await expectError(.invalidCredentials) { try await eve.login("alice", password: "wrong password") }
        await expectError(.invalidCredentials) { try await eve.login("nobody", password: "wrong password") }
        await expectError(.notAuthenticated) { try await eve.send("sneaky") }
        let registered = try await eve.register("Eve", password: TestServer.password)
        #expect(registered.result == "REGISTER_SUCCESS")
        let welcome = try await eve.login("EVE", password: TestServer.password)
        #expect(welcome.result == "LOGIN_SUCCESS")
        #expect(welcome.username == "Eve")
        await expectError(.alreadyAuthenticated) { try await eve.login("Eve", password: TestServer.password) }

        // Message limits.
        await expectError(.messageTooLong) { try await alice.send(String(repeating: "x", count: 4001)) }
        await expectError(.emptyMessage) { try await alice.send("   ") }
        #expect(try await alice.send(String(repeating: "x", count: 4000)).text.count == 4000)

        for client in [alice, bob, carol, daveAgain, eve] { await client.close() }
        await s.stop()
    }

    @Test("groups: create, join, post, list, members, leave, invite-only, invitations, remove, hand over, delete")
    func groups() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let alice = try await s.user("Alice")
        let bob = try await s.user("Bob")
        let carol = try await s.user("Carol")

        let created = try await alice.request(.group(.create(group: "Devs", inviteOnly: false)))
        #expect(created.type == "ok")
        await expectError(.groupExists) { try await bob.request(.group(.create(group: "devs", inviteOnly: false))) }
        await expectError(.invalidGroupName) { try await bob.request(.group(.create(group: "General", inviteOnly: false))) }

        try await bob.request(.group(.join(group: "devs")))
        #expect(try await alice.groupEvent("joined", in: "Devs").username == "Bob")
        await expectError(.alreadyMember) { try await bob.request(.group(.join(group: "Devs"))) }

        // Only members post and read.
        let post = try await bob.send("devs only", in: "devs")
        #expect(post.room == "Devs")
        #expect(try await alice.nextMessage { $0.text == "devs only" }.from == "Bob")
        await expectError(.notAMember) { try await carol.send("let me in", in: "Devs") }
        await expectError(.notAMember) { try await carol.request(.history(.room("Devs"), before: nil, limit: 10)) }
        await expectError(.noSuchGroup) { try await carol.send("hm", in: "nope") }
        let marker = try await alice.send("general marker")
        #expect(try await carol.nextMessage().messageId == marker.messageId)

        // Lists.
        let all = try await carol.request(.groups()).groups
        #expect(all == [GroupInfo(name: "Devs", owner: "Alice", members: 2, inviteOnly: false, joined: false)])
        #expect(try await carol.request(.myGroups()).groups == [])
        #expect(try await bob.request(.myGroups()).groups?.map(\.name) == ["Devs"])
        let members = try await alice.request(.groupMembers(group: "devs"))
        #expect(members.members == [
            MemberInfo(username: "Alice", online: true, owner: true), MemberInfo(username: "Bob", online: true, owner: false),
        ])

        // Invite-only: a stranger is refused until invited.
        await expectError(.notOwner) { try await bob.request(.group(.setMode(group: "devs", inviteOnly: true))) }
        try await alice.request(.group(.setMode(group: "devs", inviteOnly: true)))
        #expect(try await bob.groupEvent("mode", in: "Devs").inviteOnly == true)
        await expectError(.inviteOnly) { try await carol.request(.group(.join(group: "devs"))) }
        try await alice.request(.group(.invite(group: "devs", user: "carol")))
        let invitation = try await carol.nextFrame("an invitation") { $0.type == "invited" }
        #expect(invitation.group == "Devs")
        #expect(invitation.by == "Alice")
        try await carol.request(.group(.join(group: "devs")))
        #expect(try await bob.groupEvent("joined", in: "Devs", user: "Carol").by == nil)

        // The owner removes a member, who can no longer post.
        try await alice.request(.group(.remove(group: "devs", user: "bob")))
        let removed = try await bob.groupEvent("removed", in: "Devs")
        #expect(removed.username == "Bob")
        #expect(removed.by == "Alice")
        await expectError(.notAMember) { try await bob.send("still here?", in: "devs") }

        // Hand over ownership; the old owner loses owner powers.
        try await alice.request(.group(.transfer(group: "devs", user: "carol")))
        #expect(try await alice.groupEvent("owner", in: "Devs").username == "Carol")
        await expectError(.notOwner) { try await alice.request(.group(.setMode(group: "devs", inviteOnly: false))) }

        // The owner leaves: ownership passes to the longest-standing member.
        try await carol.request(.group(.leave(group: "devs")))
        #expect(try await alice.groupEvent("left", in: "Devs").username == "Carol")
        #expect(try await alice.groupEvent("owner", in: "Devs").username == "Alice")
        #expect(try await alice.request(.groups()).groups?.first?.owner == "Alice")
        // An invite-only group is listed to its members only: carol, gone, no longer sees it.
        #expect(try await carol.request(.groups()).groups == [])

        // The last member leaving deletes the group; an owner can delete one outright.
        try await alice.request(.group(.leave(group: "devs")))
        #expect(try await alice.request(.groups()).groups == [])
        try await bob.request(.group(.create(group: "tmp", inviteOnly: false)))
        try await alice.request(.group(.join(group: "tmp")))
        try await bob.request(.group(.delete(group: "tmp")))
        #expect(try await alice.groupEvent("deleted", in: "tmp").group == "tmp")
        #expect(try await alice.request(.myGroups()).groups == [])

        for client in [alice, bob, carol] { await client.close() }
        await s.stop()
    }

    @Test("the client's event stream yields every event in order and ends when the connection closes")
    func eventStream() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let alice = try await s.user("Alice")
        let bob = try await s.user("Bob")
        var sent: [Int64] = []
        for i in 0..<5 { sent.append(try await alice.send("n\(i)").messageId) }
        let stream = bob.events()
        var seen: [Int64] = []
        for await frame in stream {
            if let id = frame.message?.messageId { seen.append(id) }
            if seen.count == sent.count { break }
        }
        #expect(seen == sent)
        let ending = bob.events()
        await s.stop()
        var last: ClientEvent? = nil
        for await event in ending { last = event }
        #expect(last == .shutdown(message: "the server is shutting down"))
        await alice.close()
        await bob.close()
    }

    @Test("one user, two sessions: both get every event; online with the first, offline after the last")
    func twoSessions() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let alice = try await s.user("Alice")
        let bob1 = try await s.user("Bob")
        #expect(try await alice.presence(of: "Bob") == true)
        let bob2 = try await s.user("Bob", register: false)
        let sent = try await alice.send("to both")
        #expect(try await bob1.nextMessage { $0.text == "to both" } == sent)
        #expect(try await bob2.nextMessage { $0.text == "to both" } == sent)
        // A message from one session reaches the other session of the same user.
        let own = try await bob1.send("from session one", to: "alice")
        #expect(try await bob2.nextMessage { $0.text == "from session one" } == own)
        await bob1.close()
        let marker = try await alice.send("still one session left")
        #expect(try await bob2.nextMessage { $0.messageId == marker.messageId } == marker)
        let told = alice.pendingEvents.compactMap(\.presenceChanges).joined()
        #expect(!told.contains { $0.username == "Bob" })
        #expect(try await alice.request(.who()).users == ["Alice", "Bob"])
        await bob2.close()
        try await alice.wentOffline("Bob")
        #expect(try await alice.request(.who()).users == ["Alice"])
        await alice.close()
        await s.stop()
    }
}
