/// A message as stored: server-assigned id and time, sender, room and text.
/// Thread safety: a value type; `Sendable`.
public struct StoredMessage: Sendable, Hashable {
    /// Strictly increasing across the whole server.
    public var id: Int64
    public var time: Timestamp
    /// The sender's name as registered (or as the guest got it).
    public var sender: String
    public var room: Room
    /// For a group: its name at the time of sending; for a private message: the recipient's name.
    public var roomName: String
    public var text: String

    public init(id: Int64, time: Timestamp, sender: String, room: Room, roomName: String, text: String) {
        self.id = id
        self.time = time
        self.sender = sender
        self.room = room
        self.roomName = roomName
        self.text = text
    }
}
