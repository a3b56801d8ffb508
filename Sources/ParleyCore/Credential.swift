/// How a login proves who it is: the password, or a login token from an earlier `remember`.
/// Thread safety: a value type; `Sendable`.
public enum Credential: Sendable, Hashable {
    case password(String)
    case token(String)
}
