/// Validation and case-folding of user and group names.
///
/// A name is 1–32 characters from ASCII letters, digits, `_`, `-` and `.`. Two names that differ
/// only in letter case are the same name: ``key(_:)`` gives the folded form used for uniqueness,
/// while the name as registered is what users see.
/// Thread safety: stateless; every function is safe from any thread.
public enum Names {
    public static let maxLength = 32

    /// Whether `name` is a valid user or group name.
    public static func isValid(_ name: String) -> Bool {
        let utf8 = name.utf8
        guard !utf8.isEmpty, utf8.count <= maxLength else { return false }
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."):
                continue
            default:
                return false
            }
        }
        return true
    }

    /// The case-folded key of a (valid) name; names are ASCII so folding is `lowercased()`.
    public static func key(_ name: String) -> String { name.lowercased() }

    /// Checks a username, throwing `INVALID_USERNAME` with the rule when it is broken.
    public static func validateUsername(_ name: String) throws(ParleyError) {
        guard isValid(name) else {
            throw ParleyError(.invalidUsername, "usernames are 1-32 characters: letters, digits, '_', '-' and '.'")
        }
    }

    /// Checks a group name; `general` is reserved for the general room.
    public static func validateGroupName(_ name: String) throws(ParleyError) {
        guard isValid(name) else {
            throw ParleyError(.invalidGroupName, "group names are 1-32 characters: letters, digits, '_', '-' and '.'")
        }
        guard key(name) != Room.generalName else {
            throw ParleyError(.invalidGroupName, "'general' is the general room and cannot be a group name")
        }
    }
}

/// Hands out guest names: the wanted name, or the wanted name with a numeric suffix. It
/// remembers the next suffix to try for each stem, so a crowd of guests all asking for `bob`
/// costs one check each instead of a walk through every `bob2`, `bob3`, ….
/// Thread safety: a value type; the hub keeps one inside its lock.
public struct GuestNamer: Sendable {
    private var nextSuffix: [String: Int] = [:]
    /// Stems remembered at most; past it the memory starts again (suffixes are then re-checked from 2).
    public static let maxStems = 10_000

    public init() {}

    public mutating func name(for wanted: String, isTaken: (String) -> Bool) -> String {
        let stemKey = Names.key(wanted)
        if !isTaken(stemKey) { return wanted }
        if nextSuffix.count >= Self.maxStems { nextSuffix.removeAll() }
        var n = nextSuffix[stemKey] ?? 2
        while true {
            let suffix = String(n)
            let candidate = String(wanted.prefix(Names.maxLength - suffix.count)) + suffix
            n += 1
            if !isTaken(Names.key(candidate)) {
                nextSuffix[stemKey] = n
                return candidate
            }
        }
    }
}
