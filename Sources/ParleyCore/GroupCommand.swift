/// A change to a group that a user asks for; ``GroupDirectory`` decides it.
/// Thread safety: a value type; `Sendable`.
public enum GroupCommand: Sendable, Hashable {
    case create(group: String, inviteOnly: Bool)
    case join(group: String)
    case leave(group: String)
    case invite(group: String, user: String)
    case remove(group: String, user: String)
    case setMode(group: String, inviteOnly: Bool)
    case transfer(group: String, user: String)
    case delete(group: String)
}
