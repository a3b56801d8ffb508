import Foundation
import HummingbirdBcrypt
import NIOCore
import ParleyCore
import ParleyStore
import ParleyWire

/// What users do about their own logins: list their sessions, end one, log out everywhere,
/// change their password, revoke a token they no longer hold.
extension Hub {
    /// The sessions of `session`'s user, oldest first.
    func ownSessions(of session: Session) -> [SessionInfo] {
        let sessions = state.withLock { $0.users[session.identity.key]?.sessions ?? [] }
        let format = ISO8601DateFormatter()
        return sessions.sorted { $0.id < $1.id }.map {
            SessionInfo(session: $0.id, transport: $0.transport, address: $0.address, since: format.string(from: $0.since), current: $0 === session)
        }
    }

    /// Ends the session `id` of the same user (told `LOGGED_OUT`) and revokes its login token.
    /// - Throws: `BAD_REQUEST` when the user has no session of that id.
    func endSession(_ id: Int, for session: Session) throws(ParleyError) {
        let target = state.withLock { $0.users[session.identity.key]?.sessions.first { $0.id == id } }
        guard let target else { throw ParleyError(.badRequest, "you have no session \(id)") }
        // Its token is revoked, unless the asking session holds the same one (two tabs of one
        // browser share it): ending the other tab must not log this one out.
        if let hash = target.tokenHash, hash != session.tokenHash { forgetToken(hash: hash) }
        session.logger.info("session ended by its user", metadata: ["ended": "\(id)"])
        closeSession(target, ParleyError(.loggedOut, "this session was ended from another of your sessions"))
    }

    /// Revokes every login token of `session`'s account and closes its other sessions (the
    /// caller closes its own after answering). The future completes once the tokens are gone.
    func logoutEverywhere(_ session: Session) -> EventLoopFuture<Void> {
        guard let account = session.identity.account else { return session.loop.makeSucceededVoidFuture() }
        let storage = self.storage
        closeOthers(of: session, ParleyError(.loggedOut, "you logged out everywhere"))
        session.logger.info("logged out everywhere")
        return offload(on: session.loop) { try storage.deleteTokens(user: account.key, except: nil) }
            .recover { _ in }
    }

    /// Changes the password of `session`'s account: the current one must be right (throttled as
    /// a login is); every other login token is revoked and the other sessions are closed.
    func changePassword(current: String, new password: String, address: String, for session: Session) -> EventLoopFuture<Void> {
        let loop = session.loop
        guard let account = session.identity.account else {
            return loop.makeFailedFuture(ParleyError(.guestNotAllowed, "guests have no password to change"))
        }
        do { try limits.validatePassword(password) } catch { return loop.makeFailedFuture(error) }
        let keys = Self.passwordThrottleKeys(account: account.key, address: address)
        let now = Date().timeIntervalSince1970
        if let wait = state.withLock({ $0.throttle.retryAfter(keys, now: now) }) {
            return loop.makeFailedFuture(Self.rateLimited("too many wrong passwords", wait: wait))
        }
        let storage = self.storage
        let cost = configuration.bcryptCost
        let dummy = dummyHash
        let keep = session.tokenHash
        return passwords.run(on: loop, unless: { false }) { () throws -> Bool in
            let stored = try storage.account(account.key)
            guard Bcrypt.verify(current, hash: stored?.passwordHash ?? dummy), stored != nil else { return false }
            try storage.updatePassword(user: account.key, passwordHash: Bcrypt.hash(password, cost: cost))
            try storage.deleteTokens(user: account.key, except: keep)
            return true
        }.flatMapThrowing { changed in
            guard changed else {
                self.state.withLock { $0.throttle.failed(keys, now: Date().timeIntervalSince1970) }
                throw ParleyError(.invalidCredentials, "the current password is not right")
            }
            session.logger.info("password changed")
            self.closeOthers(of: session, ParleyError(.loggedOut, "your password was changed; log in with the new one"))
        }
    }

    /// Closes every session of `session`'s user but `session`, telling each `error`.
    private func closeOthers(of session: Session, _ error: ParleyError) {
        let others = state.withLock { $0.users[session.identity.key]?.sessions ?? [] }.filter { $0 !== session }
        for other in others { closeSession(other, error) }
    }
}
