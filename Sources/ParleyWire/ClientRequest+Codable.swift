import ParleyCore

extension RequestEnvelope: Codable {
    enum Key: String, CodingKey {
        case type, id, username, password, since, name, room, to, text, with, before, limit, group, user, inviteOnly, after, users, token, remember, ack, through, everywhere, current, session
    }

    /// Thrown while decoding when `type` names no request.
    struct UnknownType: Error { var type: String }
    /// Thrown while decoding when fields contradict each other.
    struct Invalid: Error { var message: String }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        let type = try c.decode(String.self, forKey: .type)
        self.id = try c.decodeIfPresent(RequestID.self, forKey: .id)
        func string(_ key: Key) throws -> String { try c.decode(String.self, forKey: key) }
        /// An optional whole number; a number that is not one, or does not fit, names its field.
        func integer<I: FixedWidthInteger & Decodable>(_ key: Key, _: I.Type = I.self) throws -> I? {
            do {
                return try c.decodeIfPresent(I.self, forKey: key)
            } catch {
                throw Invalid(message: "field '\(key.rawValue)' must be an integer")
            }
        }
        func oneOf(_ a: Key, _ b: Key) throws -> (Key, String) {
            let x = try c.decodeIfPresent(String.self, forKey: a)
            let y = try c.decodeIfPresent(String.self, forKey: b)
            switch (x, y) {
            case (let x?, nil): return (a, x)
            case (nil, let y?): return (b, y)
            default: throw Invalid(message: "'\(type)' needs exactly one of '\(a.rawValue)' or '\(b.rawValue)'")
            }
        }
        switch type {
        case "register": request = .register(username: try string(.username), password: try string(.password))
        case "login":
            let (key, secret) = try oneOf(.password, .token)
            request = .login(
                username: try string(.username), credential: key == .password ? .password(secret) : .token(secret),
                since: try integer(.since, Int64.self), remember: try c.decodeIfPresent(Bool.self, forKey: .remember) ?? false,
                ack: try c.decodeIfPresent(Bool.self, forKey: .ack) ?? false)
        case "ack":
            guard let through = try integer(.through, Int64.self) else { throw Invalid(message: "missing field 'through'") }
            request = .ack(through: through)
        case "guest": request = .guest(name: try string(.name))
        case "send":
            let (key, target) = try oneOf(.room, .to)
            let text = try string(.text)
            request = .send(key == .room ? .room(target) : .with(target), text: text)
        case "history":
            let (key, target) = try oneOf(.room, .with)
            request = .history(
                key == .room ? .room(target) : .with(target),
                before: try integer(.before, Int64.self),
                limit: try integer(.limit, Int.self))
        case "who":
            request = .who(after: try c.decodeIfPresent(String.self, forKey: .after), limit: try integer(.limit, Int.self))
        case "follow": request = .follow(try c.decode([String].self, forKey: .users))
        case "unfollow": request = .unfollow(try c.decode([String].self, forKey: .users))
        case "ping": request = .ping
        case "pong": request = .pong
        case "groups": request = .groups(after: try c.decodeIfPresent(String.self, forKey: .after))
        case "my_groups": request = .myGroups(after: try c.decodeIfPresent(String.self, forKey: .after))
        case "group_create":
            request = .group(.create(group: try string(.group), inviteOnly: try c.decodeIfPresent(Bool.self, forKey: .inviteOnly) ?? false))
        case "group_join": request = .group(.join(group: try string(.group)))
        case "group_leave": request = .group(.leave(group: try string(.group)))
        case "group_members": request = .groupMembers(group: try string(.group), after: try c.decodeIfPresent(String.self, forKey: .after))
        case "group_invite": request = .group(.invite(group: try string(.group), user: try string(.user)))
        case "group_remove": request = .group(.remove(group: try string(.group), user: try string(.user)))
        case "group_mode": request = .group(.setMode(group: try string(.group), inviteOnly: try c.decode(Bool.self, forKey: .inviteOnly)))
        case "group_transfer": request = .group(.transfer(group: try string(.group), user: try string(.user)))
        case "group_delete": request = .group(.delete(group: try string(.group)))
        case "logout": request = .logout(everywhere: try c.decodeIfPresent(Bool.self, forKey: .everywhere) ?? false)
        case "change_password": request = .changePassword(current: try string(.current), password: try string(.password))
        case "sessions": request = .sessions
        case "end_session":
            guard let session = try integer(.session, Int.self) else { throw Invalid(message: "missing field 'session'") }
            request = .endSession(session)
        case "revoke": request = .revoke(token: try string(.token))
        default: throw UnknownType(type: type)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(request.type, forKey: .type)
        try c.encodeIfPresent(id, forKey: .id)
        switch request {
        case .register(let username, let password):
            try c.encode(username, forKey: .username)
            try c.encode(password, forKey: .password)
        case .ack(let through):
            try c.encode(through, forKey: .through)
        case .login(let username, let credential, let since, let remember, let ack):
            try c.encode(username, forKey: .username)
            switch credential {
            case .password(let password): try c.encode(password, forKey: .password)
            case .token(let token): try c.encode(token, forKey: .token)
            }
            try c.encodeIfPresent(since, forKey: .since)
            if remember { try c.encode(true, forKey: .remember) }
            if ack { try c.encode(true, forKey: .ack) }
        case .guest(let name):
            try c.encode(name, forKey: .name)
        case .send(let target, let text):
            switch target {
            case .room(let room): try c.encode(room, forKey: .room)
            case .with(let user): try c.encode(user, forKey: .to)
            }
            try c.encode(text, forKey: .text)
        case .who(let after, let limit):
            try c.encodeIfPresent(after, forKey: .after)
            try c.encodeIfPresent(limit, forKey: .limit)
        case .follow(let users), .unfollow(let users):
            try c.encode(users, forKey: .users)
        case .history(let target, let before, let limit):
            switch target {
            case .room(let room): try c.encode(room, forKey: .room)
            case .with(let user): try c.encode(user, forKey: .with)
            }
            try c.encodeIfPresent(before, forKey: .before)
            try c.encodeIfPresent(limit, forKey: .limit)
        case .ping, .pong, .sessions:
            break
        case .logout(let everywhere):
            if everywhere { try c.encode(true, forKey: .everywhere) }
        case .changePassword(let current, let password):
            try c.encode(current, forKey: .current)
            try c.encode(password, forKey: .password)
        case .endSession(let session):
            try c.encode(session, forKey: .session)
        case .revoke(let token):
            try c.encode(token, forKey: .token)
        case .groups(let after), .myGroups(let after):
            try c.encodeIfPresent(after, forKey: .after)
        case .groupMembers(let group, let after):
            try c.encode(group, forKey: .group)
            try c.encodeIfPresent(after, forKey: .after)
        case .group(let command):
            switch command {
            case .create(let group, let inviteOnly), .setMode(let group, let inviteOnly):
                try c.encode(group, forKey: .group)
                try c.encode(inviteOnly, forKey: .inviteOnly)
            case .join(let group), .leave(let group), .delete(let group):
                try c.encode(group, forKey: .group)
            case .invite(let group, let user), .remove(let group, let user), .transfer(let group, let user):
                try c.encode(group, forKey: .group)
                try c.encode(user, forKey: .user)
            }
        }
    }
}
