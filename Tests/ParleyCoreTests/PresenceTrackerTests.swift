import ParleyCore
import Testing

@Suite("Presence tracker")
struct PresenceTrackerTests {
    static func on(_ name: String) -> PresenceChange { PresenceChange(username: name, online: true) }
    static func off(_ name: String) -> PresenceChange { PresenceChange(username: name, online: false) }

    @Test("below the threshold: one shared list per window, in order, each user once in their final state")
    func belowThreshold() {
        var t = PresenceTracker<String>(threshold: 10)
        let first = t.record(Self.on("a"), key: "a", interested: [])
        #expect(first, "the first change asks for a flush")
        let second = t.record(Self.on("b"), key: "b", interested: [])
        #expect(!second, "later ones join the pending window")
        _ = t.record(Self.off("a"), key: "a", interested: [])
        #expect(!t.needsInterest(in: Self.on("c")), "nobody is asked who is interested below the threshold")
        let flush = t.flush(now: 0)
        #expect(flush.toEveryone == [Self.on("b"), Self.off("a")])
        #expect(flush.individual.isEmpty)
        #expect(flush.count == nil, "no count while everyone hears of everyone")
        #expect(t.onlineCount == 1)
        let quiet = t.flush(now: 1)
        #expect(quiet.isEmpty, "nothing new, nothing sent")
    }

    @Test("above the threshold: each session gets only the users it has an interest in, batched")
    func aboveThreshold() {
        var t = PresenceTracker<String>(threshold: 2)
        _ = t.record(Self.on("a"), key: "a", interested: [])
        _ = t.record(Self.on("b"), key: "b", interested: [])
        // Crossing upward: the last shared list, and the count saying not everyone is told any more.
        let crossing = t.flush(now: 0)
        #expect(crossing.toEveryone == [Self.on("a"), Self.on("b")])
        #expect(crossing.count! == (2, false))
        #expect(t.needsInterest(in: Self.on("c")))
        _ = t.record(Self.on("c"), key: "c", interested: ["s-a", "s-b"])
        _ = t.record(Self.on("d"), key: "d", interested: ["s-a"])
        let flush = t.flush(now: 0.5)
        #expect(flush.toEveryone.isEmpty)
        #expect(flush.individual == ["s-a": [Self.on("c"), Self.on("d")], "s-b": [Self.on("c")]])
        #expect(flush.count == nil, "the count waits for its interval")
        #expect(flush.again == 1.0, "and says when it is due")
        let later = t.flush(now: 1.0)
        #expect(later.count! == (4, false))
        #expect(later.again == nil)
    }

    @Test("a session that ended is forgotten; going back below the threshold sends everyone a snapshot")
    func forgetAndSnapshot() {
        var t = PresenceTracker<String>(threshold: 2)
        _ = t.record(Self.on("a"), key: "a", interested: [])
        _ = t.record(Self.on("b"), key: "b", interested: [])
        _ = t.flush(now: 0)
        _ = t.record(Self.on("c"), key: "c", interested: ["s-a"])
        t.forget("s-a")
        let forgotten = t.flush(now: 5)
        #expect(forgotten.individual.isEmpty)
        _ = t.record(Self.off("c"), key: "c", interested: [])
        _ = t.record(Self.off("b"), key: "b", interested: [])
        let back = t.flush(now: 10)
        #expect(back.snapshotForEveryone, "everyone is sent the whole list again")
        #expect(back.toEveryone.isEmpty)
        #expect(back.count! == (1, true))
    }
}
