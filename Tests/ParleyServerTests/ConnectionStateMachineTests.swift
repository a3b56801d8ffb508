import ParleyCore
@testable import ParleyServer
import Testing

@Suite("Connection state machine (no I/O)")
struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine

    @Test("greet, refuse what needs a login, authenticate, then serve")
    func happyPath() {
        var m = Machine(loginTimeout: 30)
        #expect(m.connected() == .greet)
        #expect(m.connected() == .none, "greets once")
        #expect(m.received(.other(type: "send")) == .refuse(ParleyError(.notAuthenticated, "log in first ('send' needs a logged-in user)")))
        #expect(m.received(.ping) == .pong)
        #expect(m.received(.register) == .register)
        #expect(m.received(.login) == .authenticate)
        #expect(m.state == .authenticating)
        #expect(m.received(.login) == .refuse(ParleyError(.badRequest, "a login is already in progress")))
        #expect(m.received(.guest) == .refuse(ParleyError(.badRequest, "a login is already in progress")))
        #expect(m.loginSucceeded() == .startSession)
        #expect(m.isLoggedIn)
        #expect(m.received(.other(type: "send")) == .perform)
        #expect(m.received(.login) == .refuse(ParleyError(.alreadyAuthenticated, "you are already logged in")))
        #expect(m.loginTimerFired() == .none, "the login timer means nothing once logged in")
        #expect(m.closed() == .detach)
        #expect(m.closed() == .none, "detaches once")
    }

    @Test("a failed login lets the client try again; the login timer closes a connection that never logs in")
    func failedLoginAndTimeout() {
        var m = Machine(loginTimeout: 30)
        _ = m.connected()
        _ = m.received(.login)
        let wrong = ParleyError(.invalidCredentials, "wrong username or password")
        #expect(m.loginFailed(wrong) == .refuse(wrong))
        #expect(m.state == .awaitingLogin)
        #expect(m.received(.login) == .authenticate)
        #expect(m.loginTimerFired() == .close(ParleyError(.loginTimeout, "no login within 30 seconds")))
        #expect(m.received(.ping) == .none, "nothing is answered while closing")
        #expect(m.loginSucceeded() == .detachLateSession, "a login that finishes after closing is undone")
        #expect(m.closed() == .none, "that session was never the connection's")
    }

    @Test("guests attach at once; logout answers and closes; framing errors close; idle pings then closes")
    func guestLogoutFramingIdle() {
        var m = Machine(loginTimeout: 5)
        _ = m.connected()
        #expect(m.received(.guest) == .attachGuest)
        #expect(m.loginSucceeded() == .startSession)
        #expect(m.idle() == .ping)
        #expect(m.received(.pong) == .none)
        #expect(m.idle() == .ping, "an answer resets the ping")
        #expect(m.idle() == .close(ParleyError(.idleTimeout, "no answer to ping")))
        var n = Machine(loginTimeout: 5)
        _ = n.connected()
        _ = n.received(.guest)
        _ = n.loginSucceeded()
        #expect(n.received(.logout) == .logout)
        #expect(n.received(.other(type: "send")) == .none)
        #expect(n.closed() == .detach)
        var f = Machine(loginTimeout: 5)
        _ = f.connected()
        let tooBig = ParleyError(.frameTooLarge, "too big")
        #expect(f.malformed(ParleyError(.badJSON, "x")) == .refuse(ParleyError(.badJSON, "x")))
        #expect(f.framingFailed(tooBig) == .close(tooBig))
        #expect(f.framingFailed(tooBig) == .none)
        #expect(f.closed() == .none, "never logged in: nothing to detach")
    }
}

@Suite("Connection state machine: requests in flight")
struct ConnectionPendingTests {
    @Test("reading pauses when the limit of pending requests is reached and resumes below it")
    func pending() {
        var m = ConnectionStateMachine(loginTimeout: 30, maxPending: 2)
        _ = m.connected()
        #expect(m.requestStarted() == .none)
        #expect(m.requestStarted() == .pauseReading)
        #expect(m.requestStarted() == .none, "already paused")
        #expect(m.requestFinished() == .none, "still at the limit")
        #expect(m.requestFinished() == .resumeReading)
        #expect(m.requestFinished() == .none)
        #expect(m.pending == 0)
        _ = m.requestStarted()
        _ = m.requestStarted()
        _ = m.framingFailed(ParleyError(.frameTooLarge, "x"))
        #expect(m.requestFinished() == .none, "a closing connection is not read again")
    }
}
