/// Where a message is posted: the general room, a group, or a private conversation between two users.
///
/// `Room` is the one domain word for a place people talk; a group is a room with members, the
/// general room is the room everyone is in, and a private conversation is a room of two.
/// Thread safety: a value type; `Sendable`.
public enum Room: Hashable, Sendable {
    case general
    /// A group, by its numeric id (names can be reused after a group is deleted).
    case group(id: Int64)
    /// A private conversation; the two user keys are stored in sorted order.
    case direct(String, String)

    public static let generalName = "general"

    /// A private conversation between two users, whichever order they are given in.
    public static func direct(between a: String, and b: String) -> Room {
        let (x, y) = (Names.key(a), Names.key(b))
        return x <= y ? .direct(x, y) : .direct(y, x)
    }

    /// The stable key stored with each message: `general`, `g:<id>` or `d:<a>:<b>`.
    public var storageKey: String {
        switch self {
        case .general: return "general"
        case .group(let id): return "g:\(id)"
        case .direct(let a, let b): return "d:\(a):\(b)"
        }
    }
}
