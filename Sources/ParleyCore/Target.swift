/// What a `send` or `history` request names: a room by name (`general` or a group) or a private
/// conversation by the other user's name. The hub resolves it to a ``Room``.
/// Thread safety: a value type; `Sendable`.
public enum Target: Sendable, Hashable {
    case room(String)
    case with(String)
}
