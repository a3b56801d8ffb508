import Foundation
import NIOCore
import ParleyCore

extension Hub {
    /// Most users one session may follow.
    static let maxFollowed = 1000
    /// Default and largest page of `who`.
    static let defaultOnlinePage = 100
    static let maxOnlinePage = 1000

    /// Arranges for ``flushPresence()`` to run after `delay`.
    func schedulePresenceFlush(in delay: TimeAmount) {
        guard let loop = loops.first else { return }
        loop.scheduleTask(in: delay) { self.flushPresence() }
    }

    /// Sends what the presence tracker gathered: one frame per session (shared bytes when
    /// everyone hears of everyone), and the online count when it is due.
    func flushPresence() {
        let now = Date().timeIntervalSince1970
        let (flush, general, snapshot, inUse, named) = state.withLock { s in
            let flush = s.presence.flush(now: now)
            let snapshot = flush.snapshotForEveryone ? s.presenceSnapshot(for: "") : []
            // Those whose own arrival is in the batch: they are not told of it (their login
            // snapshot has them already), so they get the rest of the batch on its own.
            var named: [String: [Session]] = [:]
            if !flush.snapshotForEveryone {
                for change in flush.toEveryone {
                    let key = Names.key(change.username)
                    if let sessions = s.users[key]?.sessions { named[key] = sessions }
                }
            }
            return (flush, s.general.map(\.sessions), snapshot, s.formatsInUse, named)
        }
        if let again = flush.again {
            schedulePresenceFlush(in: .milliseconds(max(1, Int64((again - now) * 1000))))
        }
        guard !flush.isEmpty else { return }
        var byLoop = Array(repeating: [LoopWork](), count: max(loops.count, 1))
        func toEveryone(_ event: Event, except: [String: [Session]] = [:]) {
            let encoded = encode(event, formats: inUse)
            for (index, sessions) in general.enumerated() where !sessions.isEmpty {
                let recipients = except.isEmpty ? sessions : sessions.filter { except[$0.identity.key] == nil }
                byLoop[index].append(.fanout(Fanout(encoded: encoded, messageID: 0, recipients: recipients)))
            }
        }
        if flush.snapshotForEveryone {
            toEveryone(.presence(snapshot, snapshot: true))
        } else if !flush.toEveryone.isEmpty {
            toEveryone(.presence(flush.toEveryone, snapshot: false), except: named)
            for (key, sessions) in named {
                let others = flush.toEveryone.filter { Names.key($0.username) != key }
                guard !others.isEmpty else { continue }
                for session in sessions {
                    byLoop[session.loopIndex].append(.single(session, session.encoder.encode(.presence(others, snapshot: false), allocator: allocator)))
                }
            }
        }
        for (session, changes) in flush.individual {
            byLoop[session.loopIndex].append(.single(session, session.encoder.encode(.presence(changes, snapshot: false), allocator: allocator)))
        }
        if let count = flush.count {
            toEveryone(.onlineCount(count.online, everyone: count.everyone))
        }
        enqueue(byLoop, finished: [])
    }

    /// A page of who is online, sorted case-insensitively, starting after the name `after`.
    func who(after: String?, limit: Int?) throws(ParleyError) -> OnlinePage {
        let size = limit ?? Self.defaultOnlinePage
        guard (1...Self.maxOnlinePage).contains(size) else {
            throw ParleyError(.badRequest, "'limit' must be between 1 and \(Self.maxOnlinePage)")
        }
        return state.withLock { s in
            let sorted = s.sortedOnline ?? s.users.keys.sorted()
            s.sortedOnline = sorted
            var start = 0
            if let after {
                // The first key after `after`, by binary search.
                let key = Names.key(after)
                var (low, high) = (0, sorted.count)
                while low < high {
                    let mid = (low + high) / 2
                    if sorted[mid] <= key { low = mid + 1 } else { high = mid }
                }
                start = low
            }
            let end = min(start + size, sorted.count)
            let names = sorted[start..<end].compactMap { s.users[$0]?.identity.name }
            return OnlinePage(users: names, count: sorted.count, more: end < sorted.count)
        }
    }

    /// The session follows `names` (adding to what it follows) and is told their state now.
    /// - Throws: `USER_NOT_FOUND` for a name that is neither an account nor online; `BAD_REQUEST`
    ///   past ``maxFollowed``.
    func follow(_ names: [String], for session: Session) throws(ParleyError) -> [PresenceChange] {
        try state.withLock { s throws(ParleyError) in
            var changes: [PresenceChange] = []
            var keys: [String] = []
            for name in names {
                let key = Names.key(name)
                guard let shown = s.accounts[key] ?? s.users[key]?.identity.name else {
                    throw ParleyError(.userNotFound, "there is no user '\(name)'")
                }
                keys.append(key)
                changes.append(PresenceChange(username: shown, online: s.users[key] != nil))
            }
            let current = s.following[session] ?? []
            guard current.union(keys).count <= Self.maxFollowed else {
                throw ParleyError(.badRequest, "a session can follow at most \(Self.maxFollowed) users")
            }
            for key in keys {
                s.followers[key, default: []].insert(session)
            }
            s.following[session, default: []].formUnion(keys)
            return changes
        }
    }

    /// The session stops following `names`.
    func unfollow(_ names: [String], for session: Session) {
        state.withLock { s in
            for key in names.map(Names.key) {
                s.following[session]?.remove(key)
                s.followers[key]?.remove(session)
                if s.followers[key]?.isEmpty == true { s.followers[key] = nil }
            }
            if s.following[session]?.isEmpty == true { s.following[session] = nil }
        }
    }
}
