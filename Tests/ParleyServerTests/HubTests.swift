import Foundation
import Logging
import NIOCore
import NIOPosix
import ParleyCore
@testable import ParleyServer
import ParleyStore
import ParleyWire
import Synchronization
import ParleyTestSupport
import Testing

/// A session sink that keeps what the hub writes, decoded, and lets a test await it.
/// Thread safety: `Sendable`; state in a `Locked` (a pthread mutex).
final class RecordingSink: SessionSink {
    let eventLoop: any EventLoop
    var format: WireFormat { .native }
    private struct State {
        var frames: [ServerFrame] = []
        var waiters: [(predicate: @Sendable (ServerFrame) -> Bool, continuation: CheckedContinuation<ServerFrame, any Error>)] = []
        var closedWith: ParleyError?
    }
    private let state = Locked(State())

    init(loop: any EventLoop) { eventLoop = loop }

    func write(_ bytes: ByteBuffer, flush: Bool, written: EventLoopPromise<Void>?) {
        defer { written?.succeed() }
        var bytes = bytes
        while let payload = try? FrameDecoder.next(from: &bytes, maxFrameSize: 1 << 24), let frame = try? ServerFrame.decode(payload) {
            let waiter = state.withLock { s -> CheckedContinuation<ServerFrame, any Error>? in
                if let index = s.waiters.firstIndex(where: { $0.predicate(frame) }) { return s.waiters.remove(at: index).continuation }
                s.frames.append(frame)
                return nil
            }
            waiter?.resume(returning: frame)
        }
    }
    var isWritable: Bool { true }
    func setReading(_ reading: Bool) {}
    func close(with error: ParleyError) { state.withLock { $0.closedWith = error } }

    var received: [ServerFrame] { state.withLock { $0.frames } }

    /// The first frame (already received or arriving within 10 s) matching `predicate`.
    func next(_ what: String, where predicate: @escaping @Sendable (ServerFrame) -> Bool) async throws -> ServerFrame {
        let timer = eventLoop.scheduleTask(in: .seconds(10)) {
            let waiting = self.state.withLock { s in s.waiters.isEmpty ? nil : s.waiters.removeFirst().continuation }
            waiting?.resume(throwing: ParleyError(.internalError, "timed out waiting for \(what)"))
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            let found = state.withLock { s -> ServerFrame? in
                if let index = s.frames.firstIndex(where: predicate) { return s.frames.remove(at: index) }
                s.waiters.append((predicate, continuation))
                return nil
            }
            if let found { continuation.resume(returning: found) }
        }
    }
}

/// A hub on one event loop and a failing store in a temporary folder: no listener, no sockets.
struct HubFixture {
    let hub: Hub
    let store: FailingStore
    let group: MultiThreadedEventLoopGroup
    let pool: NIOThreadPool
    let directory: String
    var loop: any EventLoop { group.next() }

    init(presenceThreshold: Int = 100) throws {
        directory = NSTemporaryDirectory() + "parley-hub-" + UUID().uuidString
        store = try FailingStore(directory: directory)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        var configuration = ServerConfiguration()
        configuration.bcryptCost = 4
        configuration.presenceThreshold = presenceThreshold
        var logger = Logger(label: "hub-test")
        logger.logLevel = .critical
        let commits = CommitQueue(writer: store, lastMessageID: try store.lastMessageID())
        hub = try Hub(storage: store, commits: commits, configuration: configuration, loops: [group.next()], threadPool: pool,
                      passwords: PasswordChecks(threads: 1, limit: 8), encoders: [NativeEncoder()], logger: logger)
    }

    /// Attaches `name` (an account created here) and waits for the end of its replay.
    func attach(_ name: String) async throws -> (Session, RecordingSink) {
        _ = try store.createAccount(name: name, passwordHash: "-", now: .now)
        hub.state.withLock { $0.accounts[Names.key(name)] = name }
        let sink = RecordingSink(loop: loop)
        let attached = try hub.attach(.account(AccountIdentity(name: name)), sink: sink, storedPosition: 0)
        hub.replay(attached)
        _ = try await sink.next("replay_end") { $0.type == "replay_end" }
        return (attached.session, sink)
    }

    func stop() async {
        hub.commits.close()
        try? await pool.shutdownGracefully()
        await hub.passwords.shutdown()
        try? await group.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

@Suite("Hub without sockets", .timeLimit(.minutes(1)))
struct HubTests {
    @Test("a message is stored, acknowledged to its sender and delivered; a store failure answers STORAGE_FAILED and delivers nothing")
    func storageFailure() async throws {
        let f = try HubFixture()
        let (alice, aliceSink) = try await f.attach("alice")
        let (_, bobSink) = try await f.attach("bob")
        try await f.loop.submit { try f.hub.send(.room("general"), text: "hello", id: .int(1), from: alice) }.get()
        let ack = try await aliceSink.next("ack") { $0.type == "message" && $0.id == .int(1) }
        let got = try await bobSink.next("message") { $0.type == "message" }
        #expect(got.text == "hello" && got.messageId == ack.messageId && got.id == nil)

        f.store.failing.store(true, ordering: .relaxed)
        try await f.loop.submit { try f.hub.send(.room("general"), text: "lost?", id: .int(2), from: alice) }.get()
        let error = try await aliceSink.next("error") { $0.type == "error" && $0.id == .int(2) }
        #expect(error.code == "STORAGE_FAILED")
        await #expect(throws: ParleyError.self) {
            try await f.hub.groupCommand(.create(group: "devs", inviteOnly: false), from: alice).get()
        }
        f.store.failing.store(false, ordering: .relaxed)
        try await f.loop.submit { try f.hub.send(.room("general"), text: "after", id: .int(3), from: alice) }.get()
        _ = try await bobSink.next("the next message") { $0.type == "message" && $0.text == "after" }
        #expect(!bobSink.received.contains { $0.text == "lost?" }, "what was not stored is not delivered")
        #expect(try f.store.messageCount() == 2)
        await f.stop()
    }

    @Test("presence below the threshold reaches everyone; above it only group-mates and followers, with the count")
    func presence() async throws {
        let f = try HubFixture(presenceThreshold: 3)
        let (alice, aliceSink) = try await f.attach("alice")
        let (_, bobSink) = try await f.attach("bob")
        let joined = try await aliceSink.next("bob online") { $0.type == "presence" && $0.changes?.contains { $0.username == "bob" } == true }
        #expect(joined.changes?.last == PresenceChange(username: "bob", online: true))
        _ = try await f.hub.groupCommand(.create(group: "team", inviteOnly: false), from: alice).get()
        // carol makes three: from now on only those with an interest hear of arrivals and departures.
        let (_, carolSink) = try await f.attach("carol")
        let count = try await bobSink.next("the count") { $0.type == "online_count" }
        #expect(count.count == 3 && count.everyone == false)
        let welcome = try await carolSink.next("carol's count") { $0.type == "online_count" }
        #expect(welcome.count == 3)
        // dave is in alice's group; bob follows erin.
        let (dave, _) = try await f.attach("dave")
        _ = try await f.hub.groupCommand(.join(group: "team"), from: dave).get()
        let bobSession = try #require(f.hub.state.withLock { $0.users["bob"]?.sessions.first })
        _ = try store(f, "erin")
        let state = try f.hub.follow(["erin"], for: bobSession)
        #expect(state == [PresenceChange(username: "erin", online: false)])
        let (_, _) = try await f.attach("erin")
        let erin = try await bobSink.next("erin online") { $0.type == "presence" && $0.changes?.contains { $0.username == "erin" } == true }
        #expect(erin.changes == [PresenceChange(username: "erin", online: true)])
        // dave leaves: alice (same group) is told, bob (no interest) is not.
        let daveSession = dave
        f.loop.execute { f.hub.detach(daveSession) }
        _ = try await aliceSink.next("dave offline") { $0.type == "presence" && $0.changes?.contains { $0.username == "dave" && !$0.online } == true }
        let page = try f.hub.who(after: nil, limit: 2)
        #expect(page.users == ["alice", "bob"] && page.more && page.count == 4)
        #expect(try f.hub.who(after: "bob", limit: 10).users == ["carol", "erin"])
        #expect(!bobSink.received.contains { $0.changes?.contains { $0.username == "dave" } == true })
        await f.stop()
    }

    @Test("database first: a group change the store refuses leaves memory as it was")
    func groupChangesStoredFirst() async throws {
        let f = try HubFixture()
        let (alice, _) = try await f.attach("alice")
        let (bob, _) = try await f.attach("bob")
        f.store.failing.store(true, ordering: .relaxed)
        await #expect(throws: ParleyError(.storageFailed, "the change could not be stored")) {
            try await f.hub.groupCommand(.create(group: "devs", inviteOnly: false), from: alice).get()
        }
        #expect(f.hub.groupList(mine: false, for: alice).isEmpty, "the group that was not stored does not exist")
        f.store.failing.store(false, ordering: .relaxed)
        #expect(try await f.hub.groupCommand(.create(group: "devs", inviteOnly: false), from: alice).get() == "devs")
        f.store.failing.store(true, ordering: .relaxed)
        await #expect(throws: ParleyError.self) { try await f.hub.groupCommand(.join(group: "devs"), from: bob).get() }
        #expect(try f.hub.groupMembers("devs", for: alice).members.map(\.username) == ["alice"], "bob did not join")
        await #expect(throws: ParleyError.self) { try await f.hub.groupCommand(.delete(group: "devs"), from: alice).get() }
        f.store.failing.store(false, ordering: .relaxed)
        #expect(f.hub.groupList(mine: false, for: alice).map(\.name) == ["devs"], "the delete that failed left the group")
        // Many changes at once are decided one after another against what is stored.
        let joins = await withThrowingTaskGroup(of: String.self) { tasks in
            for _ in 0..<3 { tasks.addTask { try await f.hub.groupCommand(.join(group: "devs"), from: bob).get() } }
            var results: [String] = []
            while let result = await tasks.nextResult() {
                if case .success(let name) = result { results.append(name) }
            }
            return results
        }
        #expect(joins == ["devs"], "one join succeeds, the others are ALREADY_MEMBER")
        #expect(try f.hub.groupMembers("devs", for: alice).members.map(\.username) == ["alice", "bob"])
        await f.stop()
    }

    @Test("one item the store refuses fails alone: the rest of its batch is stored")
    func oneBadItem() async throws {
        let f = try HubFixture()
        let (alice, aliceSink) = try await f.attach("alice")
        // Hold the first write so that the next three requests gather into one batch.
        f.store.holdWrites.store(true, ordering: .relaxed)
        try await f.loop.submit { try f.hub.send(.room("general"), text: "first", id: .int(1), from: alice) }.get()
        var held = f.store.writeHeld.makeAsyncIterator()
        _ = await held.next()
        f.store.holdWrites.store(false, ordering: .relaxed)
        f.store.poisonText.withLock { $0 = "poison" }
        let created = f.hub.groupCommand(.create(group: "team", inviteOnly: false), from: alice)
        try await f.loop.submit {
            try f.hub.send(.room("general"), text: "poison", id: .int(2), from: alice)
            try f.hub.send(.room("general"), text: "fine", id: .int(3), from: alice)
        }.get()
        f.store.releaseWrites()
        #expect(try await created.get() == "team", "the group change in the same batch is stored")
        let refused = try await aliceSink.next("the refusal") { $0.id == .int(2) }
        #expect(refused.code == "STORAGE_FAILED")
        let fine = try await aliceSink.next("the fine one") { $0.id == .int(3) }
        #expect(fine.type == "message" && fine.text == "fine")
        #expect(try f.store.messageCount() == 2)
        #expect(try f.store.loadGroups().groups.map(\.name) == ["team"])
        await f.stop()
    }

    func store(_ f: HubFixture, _ name: String) throws -> Bool {
        f.hub.state.withLock { $0.accounts[name] = name }
        return try f.store.createAccount(name: name, passwordHash: "-", now: .now)
    }
}
