import ParleyCore
import ParleyStore

/// The hub's mutable state. Every index is kept up to date incrementally, so a login, a logout
/// or a group change costs work in proportion to what it touches (the user's sessions, groups,
/// partners and followers), never to the size of the server.
/// Thread safety: not thread-safe by itself; only ever touched inside `Hub.state`'s lock.
struct HubState {
    /// A user with at least one session.
    struct OnlineUser {
        var identity: Identity
        /// Oldest first.
        var sessions: [Session]
        /// Keys of the users this one has private conversations with.
        var partners: Set<String>
    }

    /// Registered accounts: key → name as registered.
    var accounts: [String: String]
    /// Names (keys) being registered right now: taken until the registration ends.
    var reserved: Set<String> = []
    var directory: GroupDirectory
    /// The id of the newest message handed to the event loops.
    var fanOutPosition: Int64
    /// Online users by key.
    var users: [String: OnlineUser] = [:]
    /// Every session, split by event loop: the general room's recipients.
    var general: [SessionList]
    /// For each group with online members, their sessions split by event loop.
    var groupSessions: [Int64: [SessionList]] = [:]
    /// Sessions following each user (by key), and what each session follows.
    var followers: [String: Set<Session>] = [:]
    var following: [Session: Set<String>] = [:]
    /// Each user's read position, kept after their last session ends.
    var readPositions: [String: Int64] = [:]
    var throttle: LoginThrottle
    var guestNames = GuestNamer()
    var presence: PresenceTracker<Session>
    /// Sessions per wire format; a format with none is not encoded.
    var sessionsPerFormat: [Int]
    /// Online user keys, sorted, for paging `who`; rebuilt on demand after a change.
    var sortedOnline: [String]? = nil
    var shuttingDown = false
    /// Account bans by account key (expired ones are dropped when met).
    var bans: [String: Ban] = [:]
    /// The welcome message sent at every login; empty sends none.
    var motd = ""
    /// Event loops in the server; session sets are split by loop.
    let loopCount: Int

    init(accounts: [String: String], directory: GroupDirectory, fanOutPosition: Int64, loopCount: Int, formatCount: Int, presenceThreshold: Int,
         loginBackoff: Double = 1) {
        self.throttle = LoginThrottle(baseDelay: loginBackoff)
        self.accounts = accounts
        self.directory = directory
        self.fanOutPosition = fanOutPosition
        self.loopCount = max(loopCount, 1)
        self.general = Array(repeating: SessionList(), count: max(loopCount, 1))
        self.sessionsPerFormat = Array(repeating: 0, count: max(formatCount, 1))
        self.presence = PresenceTracker(threshold: presenceThreshold)
    }

    var formatsInUse: [Bool] { sessionsPerFormat.map { $0 > 0 } }

    /// The sessions that receive a message in `room`, split by event loop index.
    func recipients(of room: Room) -> [[Session]] {
        switch room {
        case .general:
            return general.map(\.sessions)
        case .group(let id):
            return groupSessions[id]?.map(\.sessions) ?? Array(repeating: [], count: loopCount)
        case .direct(let a, let b):
            // By storage key, so a guest online under an account's name is never a recipient
            // of that account's conversations (a guest's key carries `~`).
            let first = sessions(ofStorageKey: a)
            return partition(a == b ? first : first + sessions(ofStorageKey: b))
        }
    }

    func partition(_ sessions: some Sequence<Session>) -> [[Session]] {
        var parts = Array(repeating: [Session](), count: loopCount)
        for session in sessions { parts[session.loopIndex].append(session) }
        return parts
    }

    /// The sessions of the identity with this storage key (an account's or a guest's).
    func sessions(ofStorageKey key: String) -> [Session] {
        guard let user = users[Self.userKey(key)], user.identity.storageKey == key else { return [] }
        return user.sessions
    }

    /// A storage key without a guest's `~`.
    static func userKey(_ storageKey: String) -> String {
        storageKey.hasPrefix("~") ? String(storageKey.dropFirst()) : storageKey
    }

    /// Whether `key` is an account, a name being registered, or an online user.
    func isTaken(_ key: String) -> Bool { accounts[key] != nil || reserved.contains(key) || users[key] != nil }

    // MARK: Sessions

    /// Adds a session to every set it belongs in. Returns whether it is its user's first.
    mutating func add(_ session: Session, partners: Set<String>) -> Bool {
        let key = session.identity.key
        let first = users[key] == nil
        if first {
            users[key] = OnlineUser(identity: session.identity, sessions: [session], partners: partners)
            sortedOnline = nil
        } else {
            users[key]!.sessions.append(session)
        }
        general[session.loopIndex].insert(session)
        sessionsPerFormat[session.format] += 1
        for id in directory.groupIDs(of: key) { addToGroup(id, session) }
        return first
    }

    /// Removes a session from every set. Returns whether it was its user's last.
    mutating func remove(_ session: Session) -> Bool {
        let key = session.identity.key
        guard var user = users[key], let index = user.sessions.firstIndex(where: { $0 === session }) else { return false }
        user.sessions.remove(at: index)
        general[session.loopIndex].remove(session)
        sessionsPerFormat[session.format] -= 1
        for id in directory.groupIDs(of: key) { removeFromGroup(id, session) }
        for followed in following.removeValue(forKey: session) ?? [] {
            followers[followed]?.remove(session)
            if followers[followed]?.isEmpty == true { followers[followed] = nil }
        }
        presence.forget(session)
        if user.sessions.isEmpty {
            return true
        }
        users[key] = user
        return false
    }

    /// Forgets a user whose last session ended (after their departure was recorded).
    mutating func dropUser(_ key: String) {
        users[key] = nil
        sortedOnline = nil
    }

    mutating func addToGroup(_ id: Int64, _ session: Session) {
        if groupSessions[id] == nil { groupSessions[id] = Array(repeating: SessionList(), count: loopCount) }
        groupSessions[id]![session.loopIndex].insert(session)
    }

    mutating func removeFromGroup(_ id: Int64, _ session: Session) {
        guard groupSessions[id] != nil else { return }
        groupSessions[id]![session.loopIndex].remove(session)
        if groupSessions[id]!.allSatisfy(\.isEmpty) { groupSessions[id] = nil }
    }

    /// Keeps the group session sets in step with stored group changes.
    mutating func apply(_ mutations: [GroupMutation]) {
        for mutation in mutations {
            switch mutation {
            case .create(let group):
                for member in group.members { for s in users[member]?.sessions ?? [] { addToGroup(group.id, s) } }
            case .addMember(let id, let user):
                for s in users[user]?.sessions ?? [] { addToGroup(id, s) }
            case .removeMember(let id, let user):
                for s in users[user]?.sessions ?? [] { removeFromGroup(id, s) }
            case .delete(let id):
                groupSessions[id] = nil
            case .setOwner, .setInviteOnly, .addInvitation, .removeInvitation:
                break
            }
        }
    }

    /// Two users (storage keys) had a private conversation: each is now the other's partner.
    mutating func notePartners(_ a: String, _ b: String) {
        let (x, y) = (Self.userKey(a), Self.userKey(b))
        guard x != y else { return }
        users[x]?.partners.insert(y)
        users[y]?.partners.insert(x)
    }

    // MARK: Presence

    /// Records a user's arrival or departure with the presence tracker (asking who is interested
    /// only when the tracker needs it). Returns whether a flush must be scheduled.
    mutating func recordPresence(_ change: PresenceChange, key: String) -> Bool {
        let interested = presence.needsInterest(in: change) ? interested(in: key) : []
        return presence.record(change, key: key, interested: interested)
    }

    /// The sessions (not the user's own) with an interest in `key`'s presence: its group-mates,
    /// its conversation partners and its followers.
    func interested(in key: String) -> [Session] {
        var result: [Session] = []
        for id in directory.groupIDs(of: key) {
            for part in groupSessions[id] ?? [] { result.append(contentsOf: part) }
        }
        for partner in users[key]?.partners ?? [] { result.append(contentsOf: users[partner]?.sessions ?? []) }
        result.append(contentsOf: followers[key] ?? [])
        return result.filter { $0.identity.key != key }
    }

    /// What a new session of `key` is told at login: everyone online (below the threshold), or
    /// the online users it has an interest in.
    func presenceSnapshot(for key: String) -> [PresenceChange] {
        if presence.everyone {
            return users.values.map { PresenceChange(username: $0.identity.name, online: true) }
                .sorted { $0.username.lowercased() < $1.username.lowercased() }
        }
        var keys = Set<String>()
        for id in directory.groupIDs(of: key) {
            for member in directory.group(id: id)?.members ?? [] where users[member] != nil { keys.insert(member) }
        }
        for partner in users[key]?.partners ?? [] where users[partner] != nil { keys.insert(partner) }
        return keys.sorted().compactMap { users[$0].map { PresenceChange(username: $0.identity.name, online: true) } }
    }
}
