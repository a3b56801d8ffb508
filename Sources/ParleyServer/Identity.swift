/// Who a session belongs to: a registered user or a guest.
/// Thread safety: a value type; `Sendable`.
public struct Identity: Sendable, Hashable {
    /// Case-folded name; unique among accounts and online guests.
    public let key: String
    /// The name as shown.
    public let name: String
    public let guest: Bool

    public init(name: String, guest: Bool) {
        self.key = name.lowercased()
        self.name = name
        self.guest = guest
    }

    /// The key stored with messages: a guest's carries `~`, which no account name can, so a guest's
    /// private messages never show up for a user who later registers the same name.
    public var storageKey: String { guest ? "~" + key : key }
}
