import ParleyCore

/// Registered accounts. Thread safety: implementations are `Sendable`; calls block, so make them
/// from a thread pool, never from an event loop.
public protocol AccountStore: Sendable {
    /// Creates an account. Returns false when the name (case-insensitively) is taken.
    func createAccount(name: String, passwordHash: String, now: Timestamp) throws -> Bool
    /// The account with this key (case-folded name), with its bcrypt hash and read position.
    func account(_ key: String) throws -> Account?
    /// Every account's key and name as registered.
    func accountNames() throws -> [String: String]
    /// Stores a login token (only its hash) for `user`, keeping at most `keep` per user (the
    /// most recently used).
    func saveToken(hash: String, user: String, now: Timestamp, keep: Int) throws
    /// The account a token hash belongs to, if the token was used within `maxAge` milliseconds
    /// (older ones are deleted). Marks it used.
    func account(tokenHash: String, now: Timestamp, maxAge: Int64) throws -> Account?
    /// Forgets a token.
    func deleteToken(hash: String) throws
    /// Deletes every login token of `user` but `except` (if given).
    func deleteTokens(user: String, except: String?) throws
    /// Replaces the password hash of `user`.
    func updatePassword(user: String, passwordHash: String) throws
}

/// Groups, members and invitations as loaded at start; changes are written through ``BatchWriter``.
public protocol GroupStore: Sendable {
    /// All groups with their members (longest-standing first) and invitations, and the next free group id.
    func loadGroups() throws -> (groups: [Group], nextID: Int64)
}

/// Stored messages. Writes go through ``BatchWriter``.
public protocol MessageStore: Sendable {
    /// Up to `limit` messages of `room` with ids below `before` (or the newest), oldest first.
    func history(_ room: Room, before: Int64?, limit: Int) throws -> [StoredMessage]
    /// Where `user`'s (a storage key) login replay starts in each conversation with messages in
    /// (`after`, `through`]: the given rooms and, with `directs`, the user's private
    /// conversations; in each, at most the newest `perRoom` are replayed, and a conversation that
    /// has more says so (``ReplayPlan/truncated``).
    func replayPlan(user: String, rooms: [Room], directs: Bool, after: Int64, through: Int64, perRoom: Int) throws -> ReplayPlan
    /// The next (at most `limit`) messages of a replay, oldest first; advances `plan`. Empty when it is done.
    func replayPage(_ plan: inout ReplayPlan, limit: Int) throws -> [StoredMessage]
    /// The account keys `user` has had a private conversation with (guests' keys left out).
    func conversationPartners(of user: String) throws -> [String]
    /// The id of the newest stored message, 0 when there is none.
    func lastMessageID() throws -> Int64
    /// How many messages are stored (for operators and tests).
    func messageCount() throws -> Int
}

/// Each account's read position: the id of the newest message the user has received.
/// Positions are read here and written through ``BatchWriter`` (`WriteItem.readPosition`).
public protocol ReadPositionStore: Sendable {
    func readPosition(of user: String) throws -> Int64
}

/// The back end of the ``CommitQueue``: writes one batch in one transaction.
public protocol BatchWriter: Sendable {
    /// Writes every item of `batch` in one transaction. A group change that fails is rolled back
    /// alone (its index and error are returned); any other failure throws, and nothing is written.
    func write(_ batch: [WriteItem], now: Timestamp) throws -> [Int: any Error]
}

/// Everything the server needs from storage. SQLite (``SQLiteStore``) is the default; tests inject
/// stores that fail on demand.
public typealias Storage = AccountStore & GroupStore & MessageStore & ReadPositionStore & BatchWriter & OperatorStore

/// One write in a commit batch.
/// Thread safety: a value type; `Sendable`.
public enum WriteItem: Sendable, Hashable {
    /// A message with the id and time the commit queue gave it.
    case message(StoredMessage, senderKey: String, peerKey: String?)
    case groups([GroupMutation])
    case readPosition(user: String, messageID: Int64)
}

/// A login replay in progress: where it starts in each conversation and how far it has got.
/// Thread safety: a value type; `Sendable`.
public struct ReplayPlan: Sendable, Hashable {
    /// A conversation whose older missed messages are left out of the replay.
    public struct Truncated: Sendable, Hashable {
        /// The room's name, or the other user's in a private conversation.
        public var conversation: String
        public var isPrivate: Bool
        /// The oldest message replayed in it.
        public var before: Int64

        public init(conversation: String, isPrivate: Bool, before: Int64) {
            self.conversation = conversation
            self.isPrivate = isPrivate
            self.before = before
        }
    }

    /// The newest message the replay covers.
    public var through: Int64
    /// Per conversation, the id after which its replay starts.
    public var starts: [Room: Int64]
    /// Everything up to this id has been replayed.
    public var done: Int64
    public var truncated: [Truncated]

    public init(through: Int64, starts: [Room: Int64], done: Int64, truncated: [Truncated]) {
        self.through = through
        self.starts = starts
        self.done = done
        self.truncated = truncated
    }
}
