/// Slows down repeated failed logins for one account or one address.
///
/// After `freeFailures` consecutive failures for a key, further attempts are refused until a
/// back-off has passed; each further failure doubles it, up to `maxDelay`. A success clears the
/// account's count. Time is passed in, so the machine is tested without clocks.
/// Thread safety: a value type; the server keeps one inside a lock.
public struct LoginThrottle: Sendable {
    public struct Entry: Sendable, Hashable {
        public var failures: Int
        public var blockedUntil: Double
    }

    public var freeFailures: Int
    public var baseDelay: Double
    public var maxDelay: Double
    private var entries: [String: Entry] = [:]

    public init(freeFailures: Int = 5, baseDelay: Double = 1, maxDelay: Double = 60) {
        self.freeFailures = freeFailures
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// Seconds to wait before `keys` may try again, or nil when an attempt is allowed now.
    public func retryAfter(_ keys: [String], now: Double) -> Double? {
        let wait = keys.compactMap { entries[$0] }.map { $0.blockedUntil - now }.max() ?? 0
        return wait > 0 ? wait : nil
    }

    /// Records a failed attempt against each key.
    public mutating func failed(_ keys: [String], now: Double) {
        for key in keys {
            var entry = entries[key] ?? Entry(failures: 0, blockedUntil: 0)
            entry.failures += 1
            if entry.failures >= freeFailures {
                let exponent = min(entry.failures - freeFailures, 16)
                let delay = min(baseDelay * Double(1 << exponent), maxDelay)
                entry.blockedUntil = now + delay
            }
            entries[key] = entry
        }
        if entries.count > 100_000 { prune(now: now) }
    }

    /// Clears the record of `key` after a successful login.
    public mutating func succeeded(_ key: String) { entries[key] = nil }

    /// Forgets entries whose back-off has long passed.
    public mutating func prune(now: Double) {
        entries = entries.filter { $0.value.blockedUntil + maxDelay > now }
    }
}
