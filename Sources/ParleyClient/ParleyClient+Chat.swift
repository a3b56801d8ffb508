import ParleyCore
import ParleyWire

extension ParleyClient {
    /// Registers an account (`REGISTER_SUCCESS`); throws the server's ``ParleyError`` otherwise.
    @discardableResult
    public func register(_ username: String, password: String) async throws -> ServerFrame {
        try await request(.register(username: username, password: password))
    }

    /// Logs in (`LOGIN_SUCCESS`). The replay of missed messages follows as events, ended by `replay_end`.
    @discardableResult
    /// With `ack` (the default) the client acknowledges the messages it hands out (see
    /// ``acknowledge(_:)``), so the server's read position moves only for what was really taken.
    public func login(_ username: String, password: String, since: Int64? = nil, remember: Bool = false, ack: Bool = true,
                      timeout: Double = 10) async throws -> ServerFrame {
        enableAcknowledgements(ack)
        let reply = try await request(.login(username: username, credential: .password(password), since: since, remember: remember, ack: ack), timeout: timeout)
        lastLogin.withLock { $0 = Login(username: username, credential: .password(password), ack: ack) }
        return reply
    }

    /// Logs in with a login token from an earlier `remember` (no password, no bcrypt).
    @discardableResult
    public func login(_ username: String, token: String, since: Int64? = nil, ack: Bool = true, timeout: Double = 10) async throws -> ServerFrame {
        enableAcknowledgements(ack)
        let reply = try await request(.login(username: username, credential: .token(token), since: since, ack: ack), timeout: timeout)
        lastLogin.withLock { $0 = Login(username: username, credential: .token(token), ack: ack) }
        return reply
    }

    /// Changes the account's password (`ok`); the server ends the account's other sessions. A
    /// later ``reconnect(timeout:)`` of a password login uses the new password.
    @discardableResult
    public func changePassword(current: String, new password: String) async throws -> ServerFrame {
        let reply = try await request(.changePassword(current: current, password: password))
        lastLogin.withLock { login in
            if case .password? = login?.credential { login?.credential = .password(password) }
        }
        return reply
    }

    /// Joins as a guest; the reply's `username` is the name the server gave.
    @discardableResult
    public func guest(_ name: String) async throws -> ServerFrame {
        try await request(.guest(name: name))
    }

    /// Sends `text` to `general` or a group and returns the stored message (the acknowledgement).
    @discardableResult
    public func send(_ text: String, in room: String = "general", timeout: Double = 10) async throws -> WireMessage {
        try Self.stored(try await request(.send(.room(room), text: text), timeout: timeout))
    }

    /// Sends `text` privately to `user` and returns it as stored.
    @discardableResult
    public func send(_ text: String, to user: String, timeout: Double = 10) async throws -> WireMessage {
        try Self.stored(try await request(.send(.with(user), text: text), timeout: timeout))
    }

    static func stored(_ frame: ServerFrame) throws -> WireMessage {
        guard let message = frame.chatMessage else {
            throw ParleyError(.internalError, "expected a message, got '\(frame.type)'")
        }
        return message
    }

    /// Waits for the next chat message event matching `predicate`.
    public func nextMessage(timeout: Double = 10, where predicate: @escaping @Sendable (WireMessage) -> Bool = { _ in true }) async throws -> WireMessage {
        let event = try await next(timeout: timeout, "a message") { event in event.message.map(predicate) ?? false }
        guard let message = event.message else { throw ClientError.closed }
        return message
    }
}
