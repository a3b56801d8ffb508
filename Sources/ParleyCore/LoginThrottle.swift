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
    /// What the entries may cost at most (keys and bookkeeping, in bytes); past it, expired
    /// entries go, then those blocked the shortest.
    public var maxBytes: Int
    private var entries: [String: Entry] = [:]
    /// The estimated cost of the entries, in bytes.
    public private(set) var bytes = 0

    public init(freeFailures: Int = 5, baseDelay: Double = 1, maxDelay: Double = 60, maxBytes: Int = 8 << 20) {
        self.freeFailures = freeFailures
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.maxBytes = maxBytes
    }

    /// An entry's estimated cost: its key's bytes and the dictionary's bookkeeping.
    static func cost(_ key: String) -> Int { key.utf8.count + 64 }

    /// The number of keys remembered.
    public var count: Int { entries.count }

    /// Seconds to wait before `keys` may try again, or nil when an attempt is allowed now.
    public func retryAfter(_ keys: [String], now: Double) -> Double? {
        let wait = keys.compactMap { entries[$0] }.map { $0.blockedUntil - now }.max() ?? 0
        return wait > 0 ? wait : nil
    }

    /// Records a failed attempt against each key.
    public mutating func failed(_ keys: [String], now: Double) {
        for key in keys {
            if entries[key] == nil { bytes += Self.cost(key) }
            var entry = entries[key] ?? Entry(failures: 0, blockedUntil: 0)
            entry.failures += 1
            if entry.failures >= freeFailures {
                let exponent = min(entry.failures - freeFailures, 16)
                let delay = min(baseDelay * Double(1 << exponent), maxDelay)
                entry.blockedUntil = now + delay
            }
            entries[key] = entry
        }
        if bytes > maxBytes { shrink(now: now) }
    }

    /// Clears the record of `key` after a successful login.
    public mutating func succeeded(_ key: String) {
        if entries.removeValue(forKey: key) != nil { bytes -= Self.cost(key) }
    }

    /// Forgets entries whose back-off has long passed.
    public mutating func prune(now: Double) {
        entries = entries.filter { $0.value.blockedUntil + maxDelay > now }
        bytes = entries.keys.reduce(0) { $0 + Self.cost($1) }
    }

    /// Over the byte bound: forgets expired entries, then, if that is not enough, those whose
    /// back-off ends soonest, down to three quarters of the bound.
    private mutating func shrink(now: Double) {
        prune(now: now)
        guard bytes > maxBytes else { return }
        for (key, _) in entries.sorted(by: { $0.value.blockedUntil < $1.value.blockedUntil }) {
            guard bytes > maxBytes * 3 / 4 else { break }
            entries[key] = nil
            bytes -= Self.cost(key)
        }
    }
}
