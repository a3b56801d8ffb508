import ParleyCore

// The words the logs use for connections, their ends and group changes. What is logged at
// `info` and above, by whom: connections (`connected`, `disconnected` with `reason`; Connection),
// logins (`logged in`, Hub.attach; `login failed` with `reason` and `method`, Connection),
// registrations (`registered`, Hub.register; `registration refused`, Connection), group changes
// (`group changed`, Hub.groupCommand), sessions ending, password changes, refused connections,
// storage errors. Passwords, login tokens and message text never appear above `debug`.

extension Connection {
    /// The transport of a connection in logs: `native` or `websocket`.
    static func transport(of sink: any ConnectionSink) -> String {
        ParleyServer.transportName(format: sink.format.index)
    }

    /// Why a connection closed, for the `disconnected` line: the error the server closed it with
    /// (its code and message), the client's `logout`, the server's shutdown, or the client (or
    /// the network) closing it.
    static func closeReason(_ closeError: ParleyError?, loggedOut: Bool, shuttingDown: Bool) -> String {
        if let closeError { return "\(closeError.code): \(closeError.message)" }
        if loggedOut { return "logout" }
        if shuttingDown { return "server shutting down" }
        return "closed by the client"
    }
}

/// The error a connection was closed with, kept by its sink for the `disconnected` line and the
/// error metrics. A reference, so that an open connection's state grows by one pointer, not by a
/// whole ``ParleyError``.
/// Thread safety: immutable; `Sendable`.
final class ClosedWith: Sendable {
    let error: ParleyError
    init(_ error: ParleyError) { self.error = error }
}

extension Hub {
    /// Whether ``ParleyServer/shutdown()`` has begun.
    var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }
}

extension GroupCommand {
    /// The change in logs (`create`, `join`, `invite`...) and the other user it concerns, if any.
    var logged: (change: String, target: String?) {
        switch self {
        case .create: ("create", nil)
        case .join: ("join", nil)
        case .leave: ("leave", nil)
        case .invite(_, let user): ("invite", user)
        case .remove(_, let user): ("remove", user)
        case .setMode(_, let inviteOnly): (inviteOnly ? "set invite only" : "set open", nil)
        case .transfer(_, let user): ("transfer", user)
        case .delete: ("delete", nil)
        }
    }
}
