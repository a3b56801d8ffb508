import Foundation
import NIOCore
import ParleyCore

/// Every message the server sends, as one flat JSON object whose `type` says which fields are
/// present (docs/PROTOCOL.md lists them). Absent fields are omitted from the JSON.
///
/// One type serves both sides: the server encodes it once per event and sends the same bytes to
/// every recipient; clients decode it.
/// Thread safety: a value type; `Sendable`.
public struct ServerFrame: Codable, Sendable, Hashable {
    public var type: String
    /// The `id` of the request this answers.
    public var id: RequestID?
    // error
    public var code: String?
    public var message: String?
    public var retryAfter: Double?
    /// `KICKED`, `BANNED`: why, as the operator said.
    public var reason: String?
    /// `BANNED`: when the ban ends (ISO 8601); absent when it does not.
    public var until: String?
    // hello
    public var server: String?
    public var version: Int?
    public var registration: Bool?
    public var guests: Bool?
    public var maxFrame: Int?
    public var maxText: Int?
    public var maxTextBytes: Int?
    // accounts, presence
    public var result: String?
    public var username: String?
    public var guest: Bool?
    /// A login token (in `welcome`, after a login with `remember`).
    public var token: String?
    public var online: Bool?
    // a chat message
    public var messageId: Int64?
    public var time: String?
    public var from: String?
    public var room: String?
    public var to: String?
    public var text: String?
    public var replay: Bool?
    // replies with lists
    public var with: String?
    public var messages: [WireMessage]?
    public var more: Bool?
    /// `replay_more`: the id of the oldest message replayed in that conversation.
    public var before: Int64?
    public var count: Int?
    public var users: [String]?
    // presence
    public var changes: [PresenceChange]?
    public var snapshot: Bool?
    public var everyone: Bool?
    public var presenceLimit: Int?
    public var groups: [GroupInfo]?
    public var members: [MemberInfo]?
    // groups
    public var group: String?
    public var event: String?
    public var by: String?
    public var owner: String?
    public var inviteOnly: Bool?
    // sessions
    public var sessions: [SessionInfo]?

    public init(type: String, id: RequestID? = nil) {
        self.type = type
        self.id = id
    }

    /// The message fields of a `message` frame, when it is one.
    public var chatMessage: WireMessage? {
        guard type == "message", let messageId, let time, let from, let text else { return nil }
        return WireMessage(messageId: messageId, time: time, from: from, room: room, to: to, text: text, replay: replay)
    }
}

/// A chat message inside a `history` reply (and the fields of a `message` frame).
/// Thread safety: a value type; `Sendable`.
public struct WireMessage: Codable, Sendable, Hashable {
    public var messageId: Int64
    public var time: String
    public var from: String
    /// `general` or a group name; absent for private messages.
    public var room: String?
    /// The recipient of a private message.
    public var to: String?
    public var text: String
    public var replay: Bool?

    public init(messageId: Int64, time: String, from: String, room: String?, to: String?, text: String, replay: Bool? = nil) {
        self.messageId = messageId
        self.time = time
        self.from = from
        self.room = room
        self.to = to
        self.text = text
        self.replay = replay
    }

    public init(_ stored: StoredMessage) {
        switch stored.room {
        case .general, .group:
            self.init(messageId: stored.id, time: stored.time.iso8601, from: stored.sender, room: stored.roomName, to: nil, text: stored.text)
        case .direct:
            self.init(messageId: stored.id, time: stored.time.iso8601, from: stored.sender, room: nil, to: stored.roomName, text: stored.text)
        }
    }
}

extension ServerFrame {
    public static let protocolVersion = 1

    public static func error(_ error: ParleyError, id: RequestID? = nil) -> ServerFrame {
        var frame = ServerFrame(type: "error", id: id)
        frame.code = error.code.rawValue
        frame.message = error.message
        frame.retryAfter = error.retryAfter
        frame.by = error.by
        frame.reason = error.reason
        frame.until = error.until
        return frame
    }

    public static func ok(id: RequestID?) -> ServerFrame { ServerFrame(type: "ok", id: id) }

    /// A `message` frame for a stored message.
    public static func message(_ stored: StoredMessage, id: RequestID? = nil, replay: Bool = false) -> ServerFrame {
        var frame = ServerFrame(type: "message", id: id)
        frame.setMessage(WireMessage(stored))
        if replay { frame.replay = true }
        return frame
    }

    mutating func setMessage(_ m: WireMessage) {
        messageId = m.messageId
        time = m.time
        from = m.from
        room = m.room
        to = m.to
        text = m.text
    }

    /// The typed error, when this is an `error` frame.
    public var parleyError: ParleyError? {
        guard type == "error" else { return nil }
        return ParleyError(ParleyError.Code(code ?? "INTERNAL"), message ?? "", retryAfter: retryAfter, by: by, reason: reason, until: until)
    }
}

extension ServerFrame {
    private static let decoder = JSONDecoder()

    /// The JSON payload, without framing (what a WebSocket text frame would carry), with its
    /// fields in a fixed order (see ``writeJSON(into:)``).
    public func json() -> [UInt8] {
        var buffer = ByteBufferAllocator().buffer(capacity: 128)
        writeJSON(into: &buffer)
        return Array(buffer.readableBytesView)
    }

    /// The frame, with its list shortened (and `more` set) until its payload fits `maxBytes`, so
    /// no reply exceeds the `maxFrame` the hello announced. A history page keeps its newest
    /// messages (page back with `before`); lists of users, groups and members keep their first
    /// entries (continue with `after`).
    public func frame(within maxBytes: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        let whole = frame(allocator: allocator)
        let count = messages?.count ?? users?.count ?? groups?.count ?? members?.count ?? 0
        guard whole.readableBytes - 4 > maxBytes, count > 0 else { return whole }
        // The largest number of entries that fits, by binary search (a few encodings at most).
        var (low, high) = (0, count - 1)
        var best = shortened(to: 0).frame(allocator: allocator)
        while low <= high {
            let mid = (low + high + 1) / 2
            let candidate = shortened(to: mid).frame(allocator: allocator)
            if candidate.readableBytes - 4 <= maxBytes {
                best = candidate
                low = mid + 1
            } else {
                high = mid - 1
            }
            if low > high || mid == 0 { break }
        }
        return best
    }

    private func shortened(to n: Int) -> ServerFrame {
        var frame = self
        frame.more = true
        if let messages { frame.messages = Array(messages.suffix(n)) }
        if let users { frame.users = Array(users.prefix(n)) }
        if let groups { frame.groups = Array(groups.prefix(n)) }
        if let members { frame.members = Array(members.prefix(n)) }
        return frame
    }

    /// The frame (length prefix and JSON) ready to write to any number of connections.
    public func frame(allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 128)
        buffer.writeInteger(UInt32(0))
        writeJSON(into: &buffer)
        buffer.setInteger(UInt32(buffer.readableBytes - 4), at: buffer.readerIndex)
        return buffer
    }

    /// Decodes a frame payload.
    public static func decode(_ payload: ByteBuffer) throws -> ServerFrame {
        try decoder.decode(ServerFrame.self, from: Data(payload.readableBytesView))
    }
}

extension ServerFrame {
    /// The native form of a domain event (docs/PROTOCOL.md). Chat messages have a faster
    /// hand-written encoding, ``messageFrame(_:id:replay:allocator:)``, that produces the same JSON.
    public init(event: Event) {
        switch event {
        case .message(let message):
            self = .message(message)
        case .replayed(let message):
            self = .message(message, replay: true)
        case .replayMore(let conversation, let isPrivate, let before):
            self.init(type: "replay_more")
            if isPrivate { self.with = conversation } else { self.room = conversation }
            self.before = before
        case .replayEnd(let count):
            self.init(type: "replay_end")
            self.count = count
        case .presence(let changes, let snapshot):
            self.init(type: "presence")
            self.changes = changes
            if snapshot { self.snapshot = true }
        case .onlineCount(let count, let everyone):
            self.init(type: "online_count")
            self.count = count
            self.everyone = everyone
        case .group(let name, let change):
            self.init(type: "group")
            self.group = name
            switch change {
            case .joined(let user):
                self.event = "joined"
                self.username = user
            case .left(let user):
                self.event = "left"
                self.username = user
            case .removed(let user, let by):
                self.event = "removed"
                self.username = user
                self.by = by
            case .ownerChanged(let user):
                self.event = "owner"
                self.username = user
            case .modeChanged(let inviteOnly):
                self.event = "mode"
                self.inviteOnly = inviteOnly
            case .deleted:
                self.event = "deleted"
            }
        case .invited(let group, let by):
            self.init(type: "invited")
            self.group = group
            self.by = by
        case .shutdown(let message):
            self.init(type: "shutdown")
            self.message = message
        case .notice(let text, let by):
            self.init(type: "notice")
            self.text = text
            self.by = by
        case .motd(let text):
            self.init(type: "motd")
            self.text = text
        }
    }

    /// A `history` reply.
    public static func history(_ page: HistoryPage, id: RequestID?) -> ServerFrame {
        var frame = ServerFrame(type: "history", id: id)
        if page.isPrivate { frame.with = page.name } else { frame.room = page.name }
        frame.messages = page.messages.map(WireMessage.init)
        frame.more = page.more
        return frame
    }

    /// A `groups` reply (to `groups` and `my_groups`).
    public static func groups(_ groups: [GroupInfo], id: RequestID?) -> ServerFrame {
        var frame = ServerFrame(type: "groups", id: id)
        frame.groups = groups
        return frame
    }

    /// A `members` reply.
    public static func members(_ list: GroupMembers, id: RequestID?) -> ServerFrame {
        var frame = ServerFrame(type: "members", id: id)
        frame.group = list.group
        frame.owner = list.owner
        frame.inviteOnly = list.inviteOnly
        frame.members = list.members
        return frame
    }

    /// An `online` reply (to `who`).
    public static func online(_ page: OnlinePage, id: RequestID?) -> ServerFrame {
        var frame = ServerFrame(type: "online", id: id)
        frame.users = page.users
        frame.count = page.count
        frame.more = page.more
        return frame
    }
}

/// One of a user's sessions, in a `sessions` reply.
/// Thread safety: a value type; `Sendable`.
public struct SessionInfo: Codable, Sendable, Hashable {
    /// The id `end_session` takes.
    public var session: Int
    /// `native` or `websocket`.
    public var transport: String
    public var address: String
    /// When it logged in (ISO 8601, UTC).
    public var since: String
    /// Whether this is the session that asked.
    public var current: Bool

    public init(session: Int, transport: String, address: String, since: String, current: Bool) {
        self.session = session
        self.transport = transport
        self.address = address
        self.since = since
        self.current = current
    }
}
