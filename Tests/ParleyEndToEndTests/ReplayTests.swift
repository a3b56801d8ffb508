import Dispatch
import Foundation
import ParleyClient
import ParleyCore
import ParleyWire
import Synchronization
import Testing

@Suite("End to end: the login replay", .timeLimit(.minutes(3)))
struct ReplayTests {
    @Test("a large backlog replays through the bounded outbox to a reader that stalls, and a live message meanwhile follows it")
    func largeBacklog() async throws {
        let s = try await TestServer.start {
            $0.limits.maxOutboxBytes = 64 * 1024
            $0.limits.replayLimit = 100_000
        }
        defer { s.removeData() }
        let alice = try await s.user("alice")
        try await s.register("bob")
        let text = String(repeating: "r", count: 200)
        alice.sendRaw(TestServer.sends(3000, text: text))
        _ = try await alice.nextFrame(timeout: 60, "the last of 3,000 stored") { $0.id == .int(3000) }
        // bob's client stops reading at its first frame until released: about 1 MB of replay
        // waits for it, far over the 64 KiB outbox.
        let gate = DispatchSemaphore(value: 0)
        let stalled = Atomic<Bool>(false)
        let bob = try await ParleyClient.connect(host: "127.0.0.1", port: s.port, receiveBuffer: 4096) { _ in
            if stalled.exchange(false, ordering: .relaxed) { gate.wait() }
            return false
        }
        stalled.store(true, ordering: .relaxed)
        try bob.send(.login(username: "bob", credential: .password(TestServer.password), since: nil, remember: false, ack: true), id: .int(1))
        // Once bob is attached (and his replay under way), a live message.
        #expect(try await alice.presence(of: "bob"))
        let live = try await alice.send("live while bob's replay waits")
        gate.signal()
        _ = try await bob.nextFrame(timeout: 30, "welcome") { $0.type == "welcome" }
        let replayed = try await bob.replay()
        #expect(replayed.count == 3000)
        #expect(replayed.map(\.messageId) == replayed.map(\.messageId).sorted())
        let next = try await bob.nextMessage(timeout: 30)
        #expect(next.messageId == live.messageId && next.replay != true, "the live message follows the replay, once")
        #expect(bob.isActive, "not cut off as a slow consumer")
        await bob.close()
        await alice.close()
        await s.stop()
    }

    @Test("logging in while messages pour in: replayed and live together are every message once, in order")
    func interleaving() async throws {
        let s = try await TestServer.start { $0.limits.replayLimit = 100_000 }
        defer { s.removeData() }
        let alice = try await s.user("alice")
        try await s.register("bob")
        let count = 1500
        alice.sendRaw(TestServer.sends(count))
        // bob logs in while alice's messages are still being stored and fanned out.
        let first = try await alice.nextFrame("the first acknowledgement") { $0.id == .int(1) }
        let bob = try await s.connect()
        try await bob.login("bob", password: TestServer.password)
        let last = try await alice.nextFrame(timeout: 30, "the last acknowledgement") { $0.id == .int(Int64(count)) }
        var ids: [Int64] = try await bob.replay().map(\.messageId)
        let replayed = ids.count
        while ids.last != last.messageId {
            ids.append(try await bob.nextMessage(timeout: 30).messageId)
        }
        #expect(ids.count == count, "\(replayed) replayed, \(ids.count - replayed) live")
        #expect(ids == Array(first.messageId!...last.messageId!), "every message once, in order, no gap")
        await bob.close()
        await alice.close()
        await s.stop()
    }

    @Test("past the per-conversation cap the replay says older messages exist, for rooms and private conversations alike")
    func replayMore() async throws {
        let s = try await TestServer.start { $0.limits.replayLimit = 3 }
        defer { s.removeData() }
        let alice = try await s.user("alice")
        let (bob, _) = try await s.login("bob")
        try await bob.request(.group(.create(group: "team", inviteOnly: false)))
        try await alice.request(.group(.join(group: "team")))
        await bob.close()
        try await alice.wentOffline("bob")
        var general: [Int64] = [], direct: [Int64] = [], team: [Int64] = []
        for i in 0..<5 {
            general.append(try await alice.send("g\(i)").messageId)
            direct.append(try await alice.send("d\(i)", to: "bob").messageId)
        }
        for i in 0..<2 { team.append(try await alice.send("t\(i)", in: "team").messageId) }
        let again = try await s.connect()
        try await again.login("bob", password: TestServer.password)
        var notices: [ServerFrame] = []
        var replayed: [Int64] = []
        while true {
            let frame = try await again.nextFrame("the replay") { ["replay_more", "message", "replay_end"].contains($0.type) }
            if frame.type == "replay_end" { break }
            if frame.type == "replay_more" { notices.append(frame) } else { replayed.append(frame.messageId!) }
        }
        #expect(replayed == (general.suffix(3) + direct.suffix(3) + team).sorted())
        let byName = Dictionary(uniqueKeysWithValues: notices.map { ($0.room ?? "with " + ($0.with ?? "?"), $0.before) })
        #expect(byName == ["general": general[2], "with alice": direct[2]], "\(notices)")
        await again.close()
        await alice.close()
        await s.stop()
    }

    @Test("a reconnect resumes after what was taken: nothing missed, nothing twice, across a server restart too")
    func reconnect() async throws {
        let directory = NSTemporaryDirectory() + "parley-reconnect-" + UUID().uuidString
        let s = try await TestServer.start(directory: directory)
        let alice = try await s.user("alice")
        let (bob, _) = try await s.login("bob")
        let first = try await alice.send("before the drop")
        _ = try await bob.nextMessage { $0.messageId == first.messageId }
        try await bob.channel.close()
        let missed = try await alice.send("while bob was away")
        let bob2 = try await bob.reconnect()
        #expect(try await bob2.replay().map(\.messageId) == [missed.messageId])
        // Across a restart of the server.
        await alice.close()
        await s.stop()
        let restarted = try await TestServer.restart(directory: directory, port: s.port)
        defer { restarted.removeData() }
        let alice2 = try await restarted.user("alice", register: false)
        let after = try await alice2.send("after the restart")
        try await eventually("bob's old connection to close") { !bob2.isActive }
        let bob3 = try await bob2.reconnect()
        #expect(try await bob3.replay().map(\.messageId) == [after.messageId])
        await bob3.close()
        await alice2.close()
        await restarted.stop()
    }
}
