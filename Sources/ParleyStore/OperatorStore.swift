import ParleyCore

/// What operators do to stored data (`parley admin`): bans, server settings, deleting and
/// exporting history, statistics and backups.
/// Thread safety: implementations are `Sendable`; calls block, so make them from a thread pool,
/// never from an event loop.
public protocol OperatorStore: Sendable {
    /// Every ban, expired ones included (the caller decides what has ended).
    func bans() throws -> [Ban]
    /// Adds or replaces the ban of `ban.target`.
    func saveBan(_ ban: Ban) throws
    /// Lifts a ban. Returns false when there was none.
    func deleteBan(_ target: Ban.Target) throws -> Bool
    /// A server setting changed at run time (`motd`), or nil when never set.
    func setting(_ name: String) throws -> String?
    /// Sets (or, with nil, forgets) a server setting.
    func setSetting(_ name: String, to value: String?) throws
    /// How many stored messages `selection` names.
    func countMessages(_ selection: MessageSelection) throws -> Int
    /// Deletes exactly the messages `selection` names, in one transaction; returns how many went.
    func deleteMessages(_ selection: MessageSelection) throws -> Int
    /// The next (at most `limit`) messages `selection` names with ids above `after`, oldest first.
    func messages(_ selection: MessageSelection, after: Int64, limit: Int) throws -> [StoredMessage]
    /// Counts for `parley admin stats`.
    func statistics() throws -> StoreStatistics
    /// Writes a consistent copy of the whole database to `path` (which must not exist) while
    /// writers go on.
    func backup(to path: String) throws
}

/// A ban: of an account (by its key) or of an address range, with its reason and end.
/// Thread safety: a value type; `Sendable`.
public struct Ban: Sendable, Hashable {
    /// What is banned.
    public enum Target: Sendable, Hashable {
        /// An account, by its key (the case-folded name).
        case account(String)
        /// An address range in CIDR form (`203.0.113.0/24`, `2001:db8::/32`, or one address).
        case address(String)
    }

    public var target: Target
    /// The name as shown (the account's name as registered, or the range).
    public var name: String
    public var reason: String
    /// Who banned: the operator's name.
    public var by: String
    public var since: Timestamp
    /// When it ends; nil for a ban without end.
    public var until: Timestamp?

    public init(target: Target, name: String, reason: String, by: String, since: Timestamp, until: Timestamp?) {
        self.target = target
        self.name = name
        self.reason = reason
        self.by = by
        self.since = since
        self.until = until
    }

    /// Whether the ban holds at `now`.
    public func holds(at now: Timestamp) -> Bool { until.map { now.milliseconds < $0.milliseconds } ?? true }
}

/// Which stored messages an operator command is about: a conversation (or all), and a span of time.
/// Thread safety: a value type; `Sendable`.
public struct MessageSelection: Sendable, Hashable {
    /// One conversation, or nil for every one.
    public var room: Room?
    /// Messages sent at or after this time.
    public var from: Timestamp?
    /// Messages sent before this time.
    public var before: Timestamp?

    public init(room: Room? = nil, from: Timestamp? = nil, before: Timestamp? = nil) {
        self.room = room
        self.from = from
        self.before = before
    }
}

/// What `parley admin stats` reports about storage.
/// Thread safety: a value type; `Sendable`.
public struct StoreStatistics: Sendable, Hashable, Codable {
    public var accounts: Int
    public var groups: Int
    public var messages: Int
    /// Bytes the database takes on disk (with its write-ahead log).
    public var databaseBytes: Int64

    public init(accounts: Int, groups: Int, messages: Int, databaseBytes: Int64) {
        self.accounts = accounts
        self.groups = groups
        self.messages = messages
        self.databaseBytes = databaseBytes
    }
}
