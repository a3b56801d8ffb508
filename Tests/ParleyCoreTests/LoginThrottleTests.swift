import ParleyCore
import Testing

@Suite("Login throttle")
struct LoginThrottleTests {
    @Test("five failures block the key, with a doubling back-off; success clears it")
    func backoff() {
        var t = LoginThrottle(freeFailures: 5, baseDelay: 1, maxDelay: 60)
        for _ in 0..<4 { t.failed(["user:bob"], now: 100) }
        #expect(t.retryAfter(["user:bob"], now: 100) == nil)
        t.failed(["user:bob"], now: 100)
        #expect(t.retryAfter(["user:bob", "addr:x"], now: 100) == 1)
        #expect(t.retryAfter(["user:bob"], now: 101) == nil)
        t.failed(["user:bob"], now: 101)
        #expect(t.retryAfter(["user:bob"], now: 101) == 2)
        #expect(t.retryAfter(["user:alice"], now: 101) == nil)
        t.succeeded("user:bob")
        #expect(t.retryAfter(["user:bob"], now: 101) == nil)
    }

    @Test("the back-off never exceeds the maximum")
    func cap() {
        var t = LoginThrottle(freeFailures: 1, baseDelay: 1, maxDelay: 60)
        for _ in 0..<40 { t.failed(["addr:1"], now: 0) }
        #expect(t.retryAfter(["addr:1"], now: 0) == 60)
    }

    @Test("the throttle is bounded in bytes: a flood of distinct keys keeps it under its bound, and the newest blocks stay")
    func boundedInBytes() {
        var t = LoginThrottle(freeFailures: 1, baseDelay: 60, maxDelay: 60, maxBytes: 1 << 20)
        for i in 0..<100_000 { t.failed(["addr:10.0.\(i / 256).\(i % 256)" + String(repeating: "x", count: 60)], now: Double(i) / 1000) }
        #expect(t.bytes <= 1 << 20)
        #expect(t.count < 100_000)
        #expect(t.retryAfter(["addr:10.0.\(99_999 / 256).\(99_999 % 256)" + String(repeating: "x", count: 60)], now: 100) != nil)
    }
}
