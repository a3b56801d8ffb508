import ParleyCore
import Testing

@Suite("Group directory state machine")
struct GroupDirectoryTests {
    @Test("create makes the creator owner and only member; a taken name is GROUP_EXISTS")
    func create() throws {
        var d = GroupDirectory()
        let outcome = try d.create("Devs", by: "alice")
        #expect(outcome.group.owner == "alice")
        #expect(outcome.group.members == ["alice"])
        #expect(outcome.mutations == [.create(outcome.group)])
        #expect { try d.create("devs", by: "bob") } throws: { ($0 as? ParleyError)?.code == .groupExists }
    }

    @Test("join, leave, and ownership passing to the longest-standing member")
    func ownership() throws {
        var d = GroupDirectory()
        let id = try d.create("g", by: "alice").group.id
        let joined = try d.join("g", user: "bob")
        #expect(joined.notices == [.init(event: .joined(user: "bob"), recipients: ["alice", "bob"])])
        _ = try d.join("g", user: "carol")
        #expect { try d.join("g", user: "bob") } throws: { ($0 as? ParleyError)?.code == .alreadyMember }
        let left = try d.leave("g", user: "alice")
        #expect(left.group.owner == "bob")
        #expect(left.mutations == [.removeMember(groupID: id, user: "alice"), .setOwner(groupID: id, user: "bob")])
        #expect(left.notices.map(\.event) == [.left(user: "alice"), .ownerChanged(user: "bob")])
        _ = try d.leave("g", user: "bob")
        let last = try d.leave("g", user: "carol")
        #expect(last.mutations.last == .delete(groupID: id))
        #expect(d.group(named: "g") == nil)
    }

    @Test("invite-only groups need an invitation, which is used up by joining")
    func inviteOnly() throws {
        var d = GroupDirectory()
        _ = try d.create("club", by: "alice")
        _ = try d.setInviteOnly(true, for: "club", by: "alice")
        #expect { try d.join("club", user: "bob") } throws: { ($0 as? ParleyError)?.code == .inviteOnly }
        #expect { try d.invite("bob", to: "club", by: "carol") } throws: { ($0 as? ParleyError)?.code == .notOwner }
        _ = try d.invite("bob", to: "club", by: "alice")
        let joined = try d.join("club", user: "bob")
        #expect(joined.group.invited.isEmpty)
        _ = try d.leave("club", user: "bob")
        #expect { try d.join("club", user: "bob") } throws: { ($0 as? ParleyError)?.code == .inviteOnly }
    }

    @Test("only the owner removes, transfers and deletes; members are told")
    func ownerPowers() throws {
        var d = GroupDirectory()
        _ = try d.create("g", by: "alice")
        _ = try d.join("g", user: "bob")
        _ = try d.join("g", user: "carol")
        #expect { try d.remove("carol", from: "g", by: "bob") } throws: { ($0 as? ParleyError)?.code == .notOwner }
        let removed = try d.remove("carol", from: "g", by: "alice")
        #expect(removed.notices.first?.recipients == ["alice", "bob", "carol"])
        #expect { try d.transfer("g", to: "carol", by: "alice") } throws: { ($0 as? ParleyError)?.code == .notAMember }
        _ = try d.transfer("g", to: "bob", by: "alice")
        #expect { try d.delete("g", by: "alice") } throws: { ($0 as? ParleyError)?.code == .notOwner }
        let deleted = try d.delete("g", by: "bob")
        #expect(deleted.notices == [.init(event: .deleted, recipients: ["alice", "bob"])])
        #expect(d.all.isEmpty)
    }

    @Test("ids are never reused, even after a delete")
    func ids() throws {
        var d = GroupDirectory(groups: [Group(id: 7, name: "old", owner: "a", inviteOnly: false, members: ["a"])], nextID: 3)
        let first = try d.create("x", by: "a").group.id
        _ = try d.delete("x", by: "a")
        let second = try d.create("x", by: "a").group.id
        #expect(first == 8)
        #expect(second == 9)
    }
}
