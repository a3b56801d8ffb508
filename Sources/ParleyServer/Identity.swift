/// A registered account, as a session knows it.
/// Thread safety: a value type; `Sendable`.
public struct AccountIdentity: Sendable, Hashable {
    /// Case-folded name, unique among accounts; also its storage key.
    public let key: String
    /// The name as registered.
    public let name: String

    public init(name: String) {
        self.key = name.lowercased()
        self.name = name
    }
}

/// A guest: a name held only while online, never an account's.
/// Thread safety: a value type; `Sendable`.
public struct GuestIdentity: Sendable, Hashable {
    /// Case-folded name, unique among accounts and online guests.
    public let key: String
    /// The name as given.
    public let name: String

    public init(name: String) {
        self.key = name.lowercased()
        self.name = name
    }

    /// The key stored with a guest's messages: it carries `~`, which no account name can, so a
    /// guest's private messages never show up for a user who later registers the same name.
    public var storageKey: String { "~" + key }
}

/// Who a session belongs to: an account or a guest, distinct types, so what only an account may
/// have (a stored read position, groups, private history) takes an ``AccountIdentity``.
/// Thread safety: a value type; `Sendable`.
public enum Identity: Sendable, Hashable {
    case account(AccountIdentity)
    case guest(GuestIdentity)

    /// Case-folded name: the key of the online user (accounts and guests share one namespace).
    public var key: String {
        switch self {
        case .account(let a): a.key
        case .guest(let g): g.key
        }
    }

    /// The name as shown.
    public var name: String {
        switch self {
        case .account(let a): a.name
        case .guest(let g): g.name
        }
    }

    /// The key stored with messages (a guest's carries `~`).
    public var storageKey: String {
        switch self {
        case .account(let a): a.key
        case .guest(let g): g.storageKey
        }
    }

    /// The account, unless this is a guest.
    public var account: AccountIdentity? {
        if case .account(let a) = self { return a }
        return nil
    }

    public var isGuest: Bool { account == nil }
}
