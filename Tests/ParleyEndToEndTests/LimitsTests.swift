import Foundation
import Synchronization
import ParleyClient
import ParleyCore
import ParleyStore
import ParleyTestSupport
import ParleyWire
import Testing

@Suite("End to end: every resource bounded, with a clear answer", .timeLimit(.minutes(3)))
struct LimitsTests {
    static func framed(_ text: String) -> [UInt8] { BadInputTests.framed(text) }

    @Test("connections are capped per address and in total with TOO_MANY_CONNECTIONS; a closed one frees its place")
    func connectionCaps() async throws {
        let s = try await TestServer.start {
            $0.maxConnectionsPerAddress = 3
            $0.maxConnections = 5
        }
        defer { s.removeData() }
        var first: [ParleyClient] = []
        for _ in 0..<3 { first.append(try await s.connect(from: "127.0.0.1")) }
        await expectError(.tooManyConnections) { try await s.connect(from: "127.0.0.1") }
        // Another address has places of its own, up to the total.
        let other = try await s.connect(from: "127.0.0.2")
        let third = try await s.connect(from: "127.0.0.3")
        do {
            _ = try await s.connect(from: "127.0.0.4")
            Issue.record("a sixth connection was accepted")
        } catch let error as ParleyError {
            #expect(error.code == .tooManyConnections)
            #expect(error.message.contains("too many connections (5)"))
        }
        // The refused connections do not count: closing one admitted connection lets a new one in.
        await first.removeLast().close()
        try await eventually("the closed connection's place to be free") { s.server.connectionCount == 4 }
        let again = try await s.connect(from: "127.0.0.1")
        #expect(try await again.request(.ping).type == "pong")
        for c in first + [other, third, again] { await c.close() }
        await s.stop()
    }

    @Test("password checks are bounded (SERVER_BUSY past the limit), and those of a connection that has gone are dropped")
    func passwordChecks() async throws {
        // The store holds each account creation (the last step of a registration's check) until
        // released, so checks stay queued or running as long as the test needs, using no CPU.
        let directory = NSTemporaryDirectory() + "parley-checks-" + UUID().uuidString
        let store = try FailingStore(directory: directory)
        store.gateAccounts.store(true, ordering: .relaxed)
        let s = try await TestServer.start(directory: directory, storage: store) { $0.maxPasswordChecks = 2 }
        defer { s.removeData() }
        var entered = store.accountEntered.makeAsyncIterator()
        let flooder = try await s.connect()
        for i in 0..<6 {
            flooder.sendRaw(Self.framed(#"{"type":"register","id":\#(i),"username":"flood\#(i)","password":"correct horse"}"#))
        }
        var busy = 0
        for _ in 0..<4 {
            let answer = try await flooder.nextFrame("SERVER_BUSY") { $0.id != nil }
            #expect(answer.code == ParleyError.Code.serverBusy.rawValue, "\(answer)")
            busy += 1
        }
        #expect(busy == 4, "past two checks, the rest are refused at once, not queued")
        for _ in 0..<2 {
            _ = await entered.next()
            store.releaseAccounts()
        }
        var registered = 0
        for _ in 0..<2 where try await flooder.nextFrame("a registration") { $0.id != nil }.result == "REGISTER_SUCCESS" { registered += 1 }
        #expect(registered == 2)
        await flooder.close()
        await s.stop()
    }

    @Test("the password checks of a connection that has gone are dropped, not run")
    func passwordChecksOfAGoneConnection() async throws {
        let directory = NSTemporaryDirectory() + "parley-gone-" + UUID().uuidString
        let store = try FailingStore(directory: directory)
        store.gateAccounts.store(true, ordering: .relaxed)
        let s = try await TestServer.start(directory: directory, storage: store)
        defer { s.removeData() }
        var entered = store.accountEntered.makeAsyncIterator()
        let leaver = try await s.connect()
        for i in 0..<8 {
            leaver.sendRaw(Self.framed(#"{"type":"register","id":\#(i),"username":"gone\#(i)","password":"correct horse"}"#))
        }
        // The pool's threads (one per core) hold a check each; the rest wait behind them.
        let threads = min(s.server.passwordCheckThreads, 8)
        for _ in 0..<threads { _ = await entered.next() }
        await leaver.close()
        try await eventually("the server to see the connection go") { s.server.connectionCount == 0 }
        store.gateAccounts.store(false, ordering: .relaxed)
        for _ in 0..<threads { store.releaseAccounts() }
        try await eventually("every queued check to be run or dropped") {
            let (completed, dropped) = s.server.passwordChecks
            return completed + dropped == 8
        }
        #expect(s.server.passwordChecks.dropped == 8 - threads, "\(s.server.passwordChecks)")
        // Nobody else waits behind the dropped work.
        let (bob, _) = try await s.login("bob")
        await bob.close()
        await s.stop()
    }

    @Test("a full commit queue pushes back: the sender is not read until the backlog has been stored")
    func commitBacklog() async throws {
        let directory = NSTemporaryDirectory() + "parley-backlog-" + UUID().uuidString
        let store = try FailingStore(directory: directory)
        let s = try await TestServer.start(directory: directory, storage: store) {
            $0.maxCommitBacklog = 64
            $0.maxInflight = 1_000_000
        }
        defer { s.removeData() }
        let (alice, _) = try await s.login("alice")
        store.holdWrites.store(true, ordering: .relaxed)
        let count = 4000
        alice.sendRaw(TestServer.sends(count) + Self.framed(#"{"type":"ping","id":"after"}"#))
        // The first batch is held while the server reads on (until the bound stops it).
        var held = store.writeHeld.makeAsyncIterator()
        _ = await held.next()
        store.holdWrites.store(false, ordering: .relaxed)
        store.releaseWrites()
        var acknowledged = 0
        while true {
            let frame = try await alice.nextFrame(timeout: 30, "acknowledgements, then the pong") { $0.id != nil }
            if frame.id == .string("after") { break }
            #expect(frame.type == "message")
            acknowledged += 1
        }
        // Without the bound the server reads everything at once and the pong comes first.
        #expect(acknowledged >= 1000, "the ping was read only once most of the backlog was stored (\(acknowledged) acknowledged first)")
        try await eventually("every message stored") { try store.messageCount() == count }
        await alice.close()
        await s.stop()
    }

    @Test("shutdown under load: every stored message is acknowledged, every other send read gets SERVER_SHUTTING_DOWN")
    func shutdownUnderLoad() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        // On a thread of its own, so other tests' clients cannot slow its reading.
        let client = try await ParleyClient.connect(host: "127.0.0.1", port: s.port)
        try await client.register("alice", password: TestServer.password)
        try await client.login("alice", password: TestServer.password, ack: false)
        _ = try await client.replay()
        let count = 2000
        client.sendRaw(TestServer.sends(count))
        _ = try await client.nextFrame("the first acknowledgement") { $0.id == .int(1) }
        let stopping = Task { await s.stop() }
        var acknowledged: [Int64: Int64] = [:]
        var refused: Set<Int64> = []
        var sawShutdown = false
        acknowledged[1] = 1
        do {
            while true {
                let frame = try await client.nextFrame(timeout: 30, "answers until the connection closes")
                if frame.type == "shutdown" { sawShutdown = true; continue }
                guard case .int(let id)? = frame.id else { continue }
                #expect(acknowledged[id] == nil && !refused.contains(id), "request \(id) answered twice")
                if frame.type == "message" {
                    #expect(!sawShutdown, "an acknowledgement after the shutdown notice")
                    acknowledged[id] = frame.messageId
                } else {
                    #expect(frame.code == "SERVER_SHUTTING_DOWN", "\(frame)")
                    refused.insert(id)
                }
            }
        } catch ParleyClient.ClientError.closed {}
        await stopping.value
        #expect(sawShutdown)
        // What was answered is a prefix of what was sent: the rest was never read.
        let answered = acknowledged.count + refused.count
        #expect(Set(acknowledged.keys).union(refused) == Set((1...Int64(max(answered, 1))).prefix(answered)))
        // Every stored message was acknowledged, and nothing refused was stored.
        let store = try SQLiteStore(directory: s.directory)
        let stored = try store.history(.general, before: nil, limit: count + 10)
        #expect(stored.count == acknowledged.count, "stored \(stored.count), acknowledged \(acknowledged.count), refused \(refused.count)")
        #expect(Set(stored.map(\.id)) == Set(acknowledged.values))
        store.close()
        await client.close()
    }

    @Test("every reply fits in the maxFrame the hello announced: long lists shrink, say 'more', and the rest follows page by page")
    func repliesFitTheFrame() async throws {
        let s = try await TestServer.start {
            $0.limits.maxFrameSize = 4096
            $0.limits.maxTextBytes = 2000
        }
        defer { s.removeData() }
        let largest = Locked(0)
        let alice = try await ParleyClient.connect(host: "127.0.0.1", port: s.port) { payload in
            largest.withLock { $0 = max($0, payload.readableBytes) }
            return false
        }
        try await alice.register("alice", password: TestServer.password)
        try await alice.login("alice", password: TestServer.password)
        _ = try await alice.replay()
        var ids: [Int64] = []
        for i in 0..<30 { ids.append(try await alice.send("\(i) " + String(repeating: "x", count: 1500)).messageId) }
        // History: 30 messages of 1.5 KB do not fit in 4 KB; pages keep the newest and say more.
        var seen: [Int64] = []
        var before: Int64? = nil
        while true {
            let page = try await alice.request(.history(.room("general"), before: before, limit: 200))
            let messages = try #require(page.messages)
            #expect(!messages.isEmpty)
            seen = messages.map(\.messageId) + seen
            guard page.more == true else { break }
            before = messages.first!.messageId
        }
        #expect(seen == ids, "every message, once, in order, across the pages")
        // Groups: 120 long names do not fit either; `after` continues the list.
        for i in 0..<120 { try await alice.request(.group(.create(group: String(format: "group-%03d-", i) + String(repeating: "g", count: 22), inviteOnly: false))) }
        var names: [String] = []
        var after: String? = nil
        while true {
            let page = try await alice.request(.groups(after: after))
            let groups = try #require(page.groups)
            names += groups.map(\.name)
            guard page.more == true else { break }
            after = groups.last!.name
        }
        #expect(names.count == 120 && names == names.sorted())
        #expect(largest.withLock { $0 } <= 4096, "the largest frame was \(largest.withLock { $0 }) bytes")
        await alice.close()
        await s.stop()
    }

    @Test("a flood of pipelined history requests does not starve others' private messages")
    func historyFlood() async throws {
        let s = try await TestServer.start()
        defer { s.removeData() }
        let (writer, _) = try await s.login("writer")
        let text = String(repeating: "h", count: 220)
        writer.sendRaw(TestServer.sends(400, text: text))
        _ = try await writer.nextFrame(timeout: 30, "the last of 400 stored") { $0.id == .int(400) }
        // The flooder reads everything on a thread of its own and skips decoding it, so only
        // the server's work is measured here, not the test client's.
        let consume = Atomic<Bool>(false)
        let flooder = try await ParleyClient.connect(host: "127.0.0.1", port: s.port) { _ in consume.load(ordering: .relaxed) }
        try await flooder.register("flooder", password: TestServer.password)
        try await flooder.login("flooder", password: TestServer.password)
        _ = try await flooder.replay()
        consume.store(true, ordering: .relaxed)
        let (bob, _) = try await s.login("bob")
        let (carol, _) = try await s.login("carol")
        var flood: [UInt8] = []
        for i in 1...300 { flood += Self.framed(#"{"type":"history","id":\#(i),"room":"general","limit":200}"#) }
        flooder.sendRaw(flood)
        for i in 0..<20 {
            let sent = try await bob.send("to carol \(i)", to: "carol", timeout: 30)
            _ = try await carol.nextMessage(timeout: 30) { $0.messageId == sent.messageId }
        }
        // The flooder is still served (or, not reading, cut off as a slow consumer), never the others.
        #expect(bob.isActive && carol.isActive)
        for c in [writer, flooder, bob, carol] { await c.close() }
        await s.stop()
    }
}
