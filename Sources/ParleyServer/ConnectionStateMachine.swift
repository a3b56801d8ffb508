import ParleyCore

/// The protocol logic of one connection, whatever its transport: greeting, login, the login and
/// idle timeouts, logout and closing. A plain value whose methods take what happened and return
/// what to do; the transport's channel handler only performs the ``Action``s, so the logic is
/// tested without I/O (after postgres-nio's connection state machines).
/// Thread safety: a value type, owned by one connection's handler on its event loop.
struct ConnectionStateMachine {
    enum State: Equatable {
        /// Connected, not yet greeted.
        case connected
        /// Greeted; waiting for `register`, `login` or `guest`.
        case awaitingLogin
        /// A `login` (bcrypt) is being checked.
        case authenticating
        /// Logged in.
        case active
        /// Closing: nothing more is read.
        case closing
        case closed
    }

    /// What a request asks of the connection, as far as this machine cares.
    enum Request: Equatable {
        case register
        case login
        case guest
        case ping
        case pong
        case logout
        /// Forget a login token (allowed before login).
        case revoke
        /// Anything else (needs a login).
        case other(type: String)
    }

    enum Action: Equatable {
        /// Send the greeting and arm the login timer.
        case greet
        /// Start registering an account (the hub hashes off the loop).
        case register
        /// Start checking a login.
        case authenticate
        /// Log in a guest (no password, decided at once).
        case attachGuest
        /// Answer a ping.
        case pong
        /// Hand a request to the hub.
        case perform
        /// Answer the request with an error; the connection stays open.
        case refuse(ParleyError)
        /// Logged in: cancel the login timer and start the replay.
        case startSession
        /// A login finished after the connection closed: undo it.
        case detachLateSession
        /// Answer `ok` to `logout`, then close.
        case logout
        /// Forget a login token and answer `ok`.
        case revoke
        /// Send a ping: the client has been quiet for an idle timeout.
        case ping
        /// Tell the client why, then close.
        case close(ParleyError)
        /// The connection is gone: detach the session.
        case detach
        /// Too many requests are waiting for answers: stop reading (TCP pushes back on the client).
        case pauseReading
        /// Few enough are waiting again: read on.
        case resumeReading
        case none
    }

    private(set) var state: State = .connected
    private var pingOutstanding = false
    let loginTimeout: Double
    /// Requests waiting for an answer from the hub (register, login, history, group changes).
    private(set) var pending = 0
    /// Above this many pending requests the connection stops being read.
    let maxPending: Int
    private var readingPaused = false

    init(loginTimeout: Double, maxPending: Int = 8) {
        self.loginTimeout = loginTimeout
        self.maxPending = max(maxPending, 1)
    }

    /// A request was handed to the hub and waits for its answer.
    mutating func requestStarted() -> Action {
        pending += 1
        guard pending >= maxPending, !readingPaused, state != .closed else { return .none }
        readingPaused = true
        return .pauseReading
    }

    /// A pending request was answered.
    mutating func requestFinished() -> Action {
        pending = max(pending - 1, 0)
        guard readingPaused, pending < maxPending, state != .closed, state != .closing else { return .none }
        readingPaused = false
        return .resumeReading
    }

    var isLoggedIn: Bool { state == .active }

    mutating func connected() -> Action {
        guard state == .connected else { return .none }
        state = .awaitingLogin
        return .greet
    }

    /// A well-formed request arrived.
    mutating func received(_ request: Request) -> Action {
        pingOutstanding = false
        switch state {
        case .connected, .closing, .closed:
            return .none
        case .awaitingLogin, .authenticating:
            switch request {
            case .ping: return .pong
            case .pong: return .none
            case .revoke: return .revoke
            case .register: return .register
            case .login, .guest:
                guard state == .awaitingLogin else {
                    return .refuse(ParleyError(.badRequest, "a login is already in progress"))
                }
                if request == .login {
                    state = .authenticating
                    return .authenticate
                }
                return .attachGuest
            case .logout, .other:
                return .refuse(Self.notLoggedIn(request))
            }
        case .active:
            switch request {
            case .register, .login, .guest:
                return .refuse(ParleyError(.alreadyAuthenticated, "you are already logged in"))
            case .ping: return .pong
            case .pong: return .none
            case .revoke: return .revoke
            case .logout:
                state = .closing
                return .logout
            case .other: return .perform
            }
        }
    }

    /// A frame that could not be parsed (the request error is answered; the connection stays).
    mutating func malformed(_ error: ParleyError) -> Action {
        pingOutstanding = false
        switch state {
        case .closing, .closed, .connected: return .none
        default: return .refuse(error)
        }
    }

    /// The framing broke (empty or oversized frame): the stream cannot be trusted any more.
    mutating func framingFailed(_ error: ParleyError) -> Action {
        switch state {
        case .closing, .closed: return .none
        default:
            state = .closing
            return .close(error)
        }
    }

    /// The password check or guest login succeeded.
    mutating func loginSucceeded() -> Action {
        switch state {
        case .authenticating, .awaitingLogin:
            state = .active
            sessionStarted = true
            return .startSession
        default:
            return .detachLateSession
        }
    }

    /// The password check failed; the client may try again.
    mutating func loginFailed(_ error: ParleyError) -> Action {
        guard state == .authenticating else { return .none }
        state = .awaitingLogin
        return .refuse(error)
    }

    mutating func loginTimerFired() -> Action {
        switch state {
        case .awaitingLogin, .authenticating:
            state = .closing
            return .close(ParleyError(.loginTimeout, "no login within \(Int(loginTimeout)) seconds"))
        default:
            return .none
        }
    }

    /// Nothing was read for an idle timeout.
    mutating func idle() -> Action {
        switch state {
        case .closing, .closed, .connected: return .none
        default:
            if pingOutstanding {
                state = .closing
                return .close(ParleyError(.idleTimeout, "no answer to ping"))
            }
            pingOutstanding = true
            return .ping
        }
    }

    /// The server is closing this connection for its own reasons (slow consumer, shutdown).
    mutating func closing() {
        if state != .closed { state = .closing }
    }

    /// The connection closed.
    mutating func closed() -> Action {
        guard state != .closed else { return .none }
        state = .closed
        return sessionStarted ? .detach : .none
    }

    /// Whether a session was started (kept through `closing`, so a logout still detaches).
    private var sessionStarted = false

    static func notLoggedIn(_ request: Request) -> ParleyError {
        let type: String
        switch request {
        case .other(let name): type = name
        case .logout: type = "logout"
        default: type = "request"
        }
        return ParleyError(.notAuthenticated, "log in first ('\(type)' needs a logged-in user)")
    }
}
