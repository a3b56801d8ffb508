import Collections

/// Decides who is told which presence changes, and gathers changes that happen close together so
/// each session gets them as one frame.
///
/// While fewer than ``threshold`` users are online, every session hears of every arrival and
/// departure (one shared list per window, the same bytes for everyone). At or above it, a
/// session hears only of the users it has an interest in (the members of its groups, the
/// partners of its private conversations, the users it follows), one list per session per
/// window, and everyone gets the online count at most once per ``countInterval`` when it changed.
/// Crossing the threshold upward sends the count with `everyone: false`; crossing it downward
/// sends a snapshot of everyone online, so once things settle nobody's view is wrong.
///
/// Pure: the hub says who is interested in a change and when its window timer fires; time is
/// passed in. Thread safety: a value type; the hub keeps one inside its lock.
public struct PresenceTracker<Recipient: Hashable> {
    /// What to send when a window closes.
    public struct Flush {
        /// Changes for every session (oldest first), when everyone hears of everyone.
        public var toEveryone: [PresenceChange] = []
        /// When set, every session is sent the complete list of who is online as a snapshot
        /// (the server just went back to telling everyone about everyone); ``toEveryone`` is then empty.
        public var snapshotForEveryone = false
        /// Changes for single sessions, above the threshold.
        public var individual: [Recipient: [PresenceChange]] = [:]
        /// The online count to send to every session now.
        public var count: (online: Int, everyone: Bool)?
        /// When a count is still owed (it changed less than ``countInterval`` after the last one):
        /// call ``flush(now:)`` again at this time (returned once per owed count).
        public var again: Double?

        public var isEmpty: Bool { toEveryone.isEmpty && !snapshotForEveryone && individual.isEmpty && count == nil }
    }

    public let threshold: Int
    /// Seconds between two online counts.
    public let countInterval: Double
    public private(set) var onlineCount = 0
    /// Whether every session currently hears of every arrival and departure.
    public var everyone: Bool { onlineCount < threshold }

    private var shared: OrderedDictionary<String, PresenceChange> = [:]
    private var individual: [Recipient: OrderedDictionary<String, PresenceChange>] = [:]
    private var everyoneDuringWindow = true
    private var everyoneAtLastFlush = true
    private var lastCountSent = 0
    private var lastCountTime = -Double.infinity
    private var windowScheduled = false
    private var countRetryAt: Double?

    public init(threshold: Int, countInterval: Double = 1) {
        self.threshold = max(threshold, 0)
        self.countInterval = countInterval
        everyoneDuringWindow = everyone
        everyoneAtLastFlush = everyone
    }

    /// Records that a user (by `key`) came online or went offline: call it for a user's first
    /// session and after their last.
    /// - Parameter interested: the sessions with an interest in this user; needed only when
    ///   ``needsInterest(in:)`` says so (above the threshold), so below it a change costs the same
    ///   whatever the size of the server.
    /// - Returns: whether the caller must schedule ``flush(now:)`` (no flush was pending).
    public mutating func record(_ change: PresenceChange, key: String, interested: [Recipient]) -> Bool {
        if everyone { everyoneDuringWindow = true }
        onlineCount += change.online ? 1 : -1
        if everyone { everyoneDuringWindow = true }
        // A user who comes and goes within one window is reported once, in their final state.
        shared.removeValue(forKey: key)
        shared[key] = change
        if !everyoneDuringWindow {
            for recipient in interested {
                individual[recipient, default: [:]].removeValue(forKey: key)
                individual[recipient, default: [:]][key] = change
            }
        }
        return schedule()
    }

    /// Whether ``record(_:key:interested:)`` will use the interested sessions for `change`.
    public func needsInterest(in change: PresenceChange) -> Bool {
        let after = onlineCount + (change.online ? 1 : -1)
        return !(everyoneDuringWindow || everyone || after < threshold)
    }

    /// A session ended: nothing more is gathered for it.
    public mutating func forget(_ recipient: Recipient) {
        individual.removeValue(forKey: recipient)
    }

    /// Takes what to send now.
    public mutating func flush(now: Double) -> Flush {
        var out = Flush()
        if let due = countRetryAt, now >= due - 0.001 { countRetryAt = nil }
        if everyoneDuringWindow || everyone {
            if everyone && !everyoneAtLastFlush {
                out.snapshotForEveryone = true
            } else {
                out.toEveryone = Array(shared.values)
            }
        } else {
            for (recipient, changes) in individual where !changes.isEmpty {
                out.individual[recipient] = Array(changes.values)
            }
        }
        let flipped = everyone != everyoneAtLastFlush
        if flipped || (!everyone && onlineCount != lastCountSent && now - lastCountTime >= countInterval) {
            out.count = (onlineCount, everyone)
            lastCountSent = onlineCount
            lastCountTime = now
        } else if !everyone && onlineCount != lastCountSent && countRetryAt == nil {
            out.again = lastCountTime + countInterval
            countRetryAt = out.again
        }
        shared.removeAll()
        individual.removeAll()
        everyoneAtLastFlush = everyone
        everyoneDuringWindow = everyone
        windowScheduled = false
        return out
    }

    private mutating func schedule() -> Bool {
        if windowScheduled { return false }
        windowScheduled = true
        return true
    }
}
