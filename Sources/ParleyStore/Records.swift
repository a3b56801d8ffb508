import Foundation
import ParleyCore

/// A registered account as stored.
/// Thread safety: a value type; `Sendable`.
public struct Account: Sendable, Hashable {
    /// The case-folded name, unique.
    public var key: String
    /// The name as registered.
    public var name: String
    /// A bcrypt hash; never the password.
    public var passwordHash: String
    /// The id of the newest message this user has received; the login replay starts after it.
    public var readPosition: Int64

    public init(key: String, name: String, passwordHash: String, readPosition: Int64) {
        self.key = key
        self.name = name
        self.passwordHash = passwordHash
        self.readPosition = readPosition
    }
}

/// A message before it is stored: the store gives it its id and time.
/// Thread safety: a value type; `Sendable`.
public struct NewMessage: Sendable, Hashable {
    /// The sender's name as shown.
    public var sender: String
    /// The sender's storage key (a guest's is prefixed with `~`, so it never matches an account).
    public var senderKey: String
    public var room: Room
    public var roomName: String
    /// For a private message, the recipient's storage key.
    public var peerKey: String?
    public var text: String

    public init(sender: String, senderKey: String, room: Room, roomName: String, peerKey: String? = nil, text: String) {
        self.sender = sender
        self.senderKey = senderKey
        self.room = room
        self.roomName = roomName
        self.peerKey = peerKey
        self.text = text
    }
}

extension Timestamp {
    /// The current wall-clock time (the store stamps messages with it).
    public static var now: Timestamp { Timestamp(milliseconds: Int64(Date().timeIntervalSince1970 * 1000)) }
}

/// Which durability a commit waits for.
/// Thread safety: a value type; `Sendable`.
public enum Durability: String, Sendable, CaseIterable {
    /// SQLite `synchronous=NORMAL` in WAL mode: survives a crash of the process, not of the machine.
    case normal
    /// SQLite `synchronous=FULL`: every commit is fsynced before it is acknowledged.
    case full
}
