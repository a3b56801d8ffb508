import Foundation
import ParleyCore
import ParleyStore
import Synchronization
import Testing

/// A fresh folder under the system temp directory, removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let path = NSTemporaryDirectory() + "parley-store-" + UUID().uuidString
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

/// Queues a message and waits for its commit.
func append(_ store: SQLiteStore, _ message: NewMessage) throws -> StoredMessage {
    let commits = try queue(store)
    let result = Locked<Result<StoredMessage, any Error>?>(nil)
    commits.enqueue(.message(message) { r in result.withLock { $0 = r } })
    commits.flush()
    return try result.withLock { $0! }.get()
}

/// A commit queue writing to `store`, its ids following what is stored.
func queue(_ store: SQLiteStore) throws -> CommitQueue {
    CommitQueue(writer: store, lastMessageID: try store.lastMessageID())
}

func general(_ sender: String, _ text: String) -> NewMessage {
    NewMessage(sender: sender, senderKey: sender.lowercased(), room: .general, roomName: "general", text: text)
}

@Suite("SQLite store")
struct StoreTests {
    @Test("accounts are unique without regard to case and keep their spelling")
    func accounts() throws {
        try withTemporaryDirectory { dir in
            let store = try SQLiteStore(directory: dir)
            #expect(try store.createAccount(name: "Alice", passwordHash: "$2b$04$x", now: Timestamp(milliseconds: 1)))
            #expect(try !store.createAccount(name: "ALICE", passwordHash: "$2b$04$y", now: Timestamp(milliseconds: 2)))
            #expect(try store.account("alice")?.name == "Alice")
            #expect(try store.account("alice")?.passwordHash == "$2b$04$x")
            #expect(try store.accountNames() == ["alice": "Alice"])
            store.close()
        }
    }

    @Test("message ids strictly increase across batches and restarts; history pages backwards")
    func messages() throws {
        try withTemporaryDirectory { dir in
            var ids: [Int64] = []
            do {
                let store = try SQLiteStore(directory: dir)
                let commits = try queue(store)
                // Many messages queued at once are committed in few transactions.
                let done = Locked<[Int64?]>([])
                for i in 0..<500 {
                    commits.enqueue(.message(general("a", "m\(i)")) { r in done.withLock { $0.append(try? r.get().id) } })
                }
                commits.flush()
                ids = done.withLock { $0 }.compactMap { $0 }
                #expect(ids == Array(1...500))
                store.close()
            }
            let store = try SQLiteStore(directory: dir)
            let next = try append(store, general("b", "after restart"))
            #expect(next.id == 501)
            let page = try store.history(.general, before: nil, limit: 10)
            #expect(page.map(\.id) == Array(492...501))
            let older = try store.history(.general, before: 492, limit: 3)
            #expect(older.map(\.text) == ["m488", "m489", "m490"])
            #expect(try store.messageCount() == 501)
            store.close()
        }
    }

    @Test("group changes survive a restart with owners, member order and invitations")
    func groups() throws {
        try withTemporaryDirectory { dir in
            do {
                let store = try SQLiteStore(directory: dir)
                let commits = try queue(store)
                for name in ["a", "b", "c"] { _ = try store.createAccount(name: name, passwordHash: "h", now: .init(milliseconds: 0)) }
                var directory = GroupDirectory()
                var mutations: [GroupMutation] = []
                mutations += try directory.create("G", by: "a").mutations
                mutations += try directory.join("G", user: "b").mutations
                mutations += try directory.join("G", user: "c").mutations
                mutations += try directory.setInviteOnly(true, for: "G", by: "a").mutations
                mutations += try directory.leave("G", user: "a").mutations
                mutations += try directory.create("H", by: "c").mutations
                mutations += try directory.invite("a", to: "H", by: "c").mutations
                let failed = Locked<(any Error)?>(nil)
                commits.enqueue(.groups(mutations) { r in if case .failure(let e) = r { failed.withLock { $0 = e } } })
                commits.flush()
                #expect(failed.withLock { $0 } == nil)
                store.close()
            }
            let store = try SQLiteStore(directory: dir)
            let (groups, nextID) = try store.loadGroups()
            let g = try #require(groups.first { $0.name == "G" })
            #expect(g.owner == "b")
            #expect(g.members == ["b", "c"])
            #expect(g.inviteOnly)
            let h = try #require(groups.first { $0.name == "H" })
            #expect(h.invited == ["a"])
            #expect(nextID == 3)
            store.close()
        }
    }

    @Test("replay: only after the read position, capped per conversation (which says so), private ones included, in pages")
    func missed() throws {
        try withTemporaryDirectory { dir in
            let store = try SQLiteStore(directory: dir)
            for i in 0..<10 { _ = try append(store, general("a", "g\(i)")) }
            let dm = NewMessage(sender: "a", senderKey: "a", room: .direct(between: "a", and: "b"), roomName: "b", peerKey: "b", text: "psst")
            _ = try append(store, dm)
            let other = NewMessage(sender: "a", senderKey: "a", room: .direct(between: "a", and: "c"), roomName: "c", peerKey: "c", text: "not for b")
            _ = try append(store, other)
            var plan = try store.replayPlan(user: "b", rooms: [.general], directs: true, after: 3, through: 12, perRoom: 4)
            #expect(plan.truncated == [.init(conversation: "general", isPrivate: false, before: 7)])
            var pages: [[String]] = []
            while true {
                let page = try store.replayPage(&plan, limit: 2)
                if page.isEmpty { break }
                pages.append(page.map(\.text))
            }
            #expect(pages == [["g6", "g7"], ["g8", "g9"], ["psst"]])
            var none = try store.replayPlan(user: "b", rooms: [.general], directs: true, after: 12, through: 12, perRoom: 4)
            #expect(try store.replayPage(&none, limit: 10).isEmpty)
            store.close()
        }
    }

    @Test("work queued after close fails instead of vanishing")
    func closed() throws {
        try withTemporaryDirectory { dir in
            let store = try SQLiteStore(directory: dir)
            let commits = try queue(store)
            commits.close()
            let result = Locked<Result<StoredMessage, any Error>?>(nil)
            commits.enqueue(.message(general("a", "late")) { r in result.withLock { $0 = r } })
            #expect(throws: CommitQueue.Closed.self) { try result.withLock { $0! }.get() }
            #expect(try store.messageCount() == 0)
        }
    }
}

@Suite("SQLite store: login tokens")
struct TokenStoreTests {
    @Test("a token finds its account until it is older than the maximum age; each user keeps the newest few")
    func tokens() throws {
        try withTemporaryDirectory { dir in
            let store = try SQLiteStore(directory: dir)
            _ = try store.createAccount(name: "Alice", passwordHash: "h", now: .init(milliseconds: 0))
            try store.saveToken(hash: "t1", user: "alice", now: .init(milliseconds: 1000), keep: 2)
            #expect(try store.account(tokenHash: "t1", now: .init(milliseconds: 2000), maxAge: 5000)?.name == "Alice")
            #expect(try store.account(tokenHash: "nope", now: .init(milliseconds: 2000), maxAge: 5000) == nil)
            #expect(try store.account(tokenHash: "t1", now: .init(milliseconds: 7001), maxAge: 5000) == nil, "too old")
            #expect(try store.account(tokenHash: "t1", now: .init(milliseconds: 2000), maxAge: 5000) == nil, "and deleted")
            for (i, hash) in ["a", "b", "c"].enumerated() {
                try store.saveToken(hash: hash, user: "alice", now: .init(milliseconds: Int64(10_000 + i)), keep: 2)
            }
            #expect(try store.account(tokenHash: "a", now: .init(milliseconds: 10_010), maxAge: 5000) == nil, "the oldest went")
            #expect(try store.account(tokenHash: "c", now: .init(milliseconds: 10_010), maxAge: 5000) != nil)
            try store.deleteToken(hash: "c")
            #expect(try store.account(tokenHash: "c", now: .init(milliseconds: 10_010), maxAge: 5000) == nil)
        }
    }
}
