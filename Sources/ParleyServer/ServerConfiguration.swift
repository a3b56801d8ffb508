import Foundation
import ParleyCore
import ParleyStore

/// Everything `parley serve` can be told. Defaults are the documented ones. A property that
/// operators set is declared as a setting in ``ServerSettings/all`` (its flag, variable, file
/// key, help and limits); ``resolve(arguments:environment:)`` builds one from them.
/// Thread safety: a value type; `Sendable`.
public struct ServerConfiguration: Sendable {
    /// Address to listen on.
    public var host = "127.0.0.1"
    /// Port for the native protocol; 0 picks a free one (tests).
    public var port = 5555
    /// Folder for `parley.sqlite`; created if missing.
    public var dataDirectory = "./parley-data"
    /// Name announced in the hello.
    public var serverName = "parley"
    public var limits = Limits()
    /// Whether `guest` logins are allowed.
    public var guests = false
    /// Whether `register` is allowed.
    public var registration = true
    /// bcrypt cost for new password hashes (4…31).
    public var bcryptCost: UInt8 = 10
    /// Seconds a new connection has to log in.
    public var loginTimeout: Double = 30
    /// Seconds without input before the server pings; twice that closes the connection.
    public var idleTimeout: Double = 300
    /// Seconds a key (account or address) is refused after its first run of failed logins;
    /// doubling with each further failure up to 60 s.
    public var loginBackoff: Double = 1
    /// Seconds a frame may take to arrive whole, from its first byte (`FRAME_TIMEOUT`).
    public var frameTimeout: Double = 10
    /// Unanswered sends waiting for storage before the server stops reading from a connection.
    public var maxInflight = 256
    /// Other requests waiting for an answer (register, login, history, group changes) before the
    /// server stops reading from a connection.
    public var maxPendingRequests = 8
    public var durability: Durability = .normal
    /// Event loop threads; 0 means one per core.
    public var threads = 0
    /// Below this many users online, every arrival and departure is sent to everyone; at or above
    /// it, only to those with an interest (docs/PROTOCOL.md, "Presence").
    public var presenceThreshold = 100
    /// Open connections allowed in all (`TOO_MANY_CONNECTIONS` past it); 0 = no limit.
    public var maxConnections = 20_000
    /// Open connections allowed from one IP address; 0 = no limit.
    public var maxConnectionsPerAddress = 64
    /// Password checks (bcrypt, for `register` and `login`) queued or running at once; past it
    /// a request is answered `SERVER_BUSY`.
    public var maxPasswordChecks = 64
    /// Operations (messages, group changes, read positions) waiting to be stored before the
    /// server stops reading from senders until the backlog halves.
    public var maxCommitBacklog = 65_536
    /// Seconds between writes of a moving read position (a crash replays at most about this much).
    public var readPositionInterval: Double = 1
    /// Port for HTTP (the browser client at `/`, WebSocket at `/ws`); 0 picks a free one; `nil`
    /// turns HTTP off.
    public var httpPort: Int? = 8080
    /// Origins (`https://chat.example.com`) whose pages may open a WebSocket, besides the
    /// server's own address (the request's `Host`): for deployments behind a proxy.
    public var allowedOrigins: [String] = []
    /// Addresses of reverse proxies whose `X-Forwarded-For` names the real client (for the login
    /// throttle and the per-address connection limit). Nobody else's is believed.
    public var trustedProxies: [String] = []
    /// Host names (and addresses) by which people reach this server, e.g. `chat.example.org`: a
    /// page may open the WebSocket when its origin names one of them (or a loopback or IP
    /// address literal). Whatever a request's `Host` says is not believed (DNS rebinding).
    public var publicNames: [String] = []
    /// Seconds an HTTP connection may stay open without a request (keep-alive) before the server
    /// closes it. WebSocket connections have the idle timeout instead.
    public var httpIdleTimeout: Double = 15

    // Operating (issue 14)
    /// PEM certificate (a chain allowed) for TLS on the native and HTTP ports; with ``tlsKey``.
    public var tlsCertificate: String? = nil
    /// PEM private key of ``tlsCertificate``.
    public var tlsKey: String? = nil
    /// With TLS, a plain (unencrypted) native port kept beside it, bound to 127.0.0.1 only;
    /// `nil` = none.
    public var plainPort: Int? = nil
    /// Folder for daily log files (`parley-YYYY-MM-DD.log`, UTC); `nil` = standard error only.
    public var logDirectory: String? = nil
    /// `text` or `json` (one JSON object per line).
    public var logFormat: LogFormat = .text
    /// trace, debug, info, notice, warning, error, critical.
    public var logLevel: String = "info"
    /// Port of `/metrics` (Prometheus) and `/health`; `nil` = off.
    public var metricsPort: Int? = nil
    /// Address of the metrics listener (loopback unless said otherwise).
    public var metricsHost = "127.0.0.1"
    /// The welcome message every client shows at login (until `parley admin motd` changes it).
    public var motd = "Welcome to the chat :)"
    /// Path of the control socket for `parley admin`; `nil` = `<data-dir>/parley.sock`.
    public var controlSocket: String? = nil
    /// Whether the console reads commands from standard input when it is a terminal.
    public var console = true

    /// The control socket's path, as configured or in the data directory.
    public var controlSocketPath: String { controlSocket ?? (dataDirectory as NSString).appendingPathComponent("parley.sock") }

    public init() {}
}

/// How log lines are written.
public enum LogFormat: String, Sendable, CaseIterable {
    /// `2026-12-04T10:00:00.123Z info parley: connected address=... transport=native`
    case text
    /// One JSON object per line: `time`, `level`, `label`, `message`, and the metadata.
    case json
}
