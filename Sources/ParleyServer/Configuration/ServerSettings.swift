import Foundation
import Logging
import ParleyStore

/// Every setting of `parley serve`, each declared once (see ``Setting``), in the order help, the
/// reference and the example file show them. To add a setting: add its property to
/// ``ServerConfiguration`` (the default is its initial value) and one entry here; then run
/// `scripts/generate-config-docs` to refresh docs/OPERATING.md and docs/parley.example.yaml
/// (a test compares them with these declarations).
/// Thread safety: immutable tables; `Sendable`.
public enum ServerSettings {
    /// A group of settings: the first part of their keys (`http` for `http.port`; empty for the
    /// top-level ones) and its title in help and docs.
    /// Thread safety: a value type; `Sendable`.
    public struct Group: Sendable {
        /// The first part of the keys (`http`), or empty for top-level keys.
        public let prefix: String
        /// The title in help and docs.
        public let title: String
    }

    /// The groups, in order.
    public static let groups: [Group] = [
        Group(prefix: "", title: "Server"),
        Group(prefix: "http", title: "HTTP and the browser client"),
        Group(prefix: "tls", title: "TLS"),
        Group(prefix: "accounts", title: "Accounts"),
        Group(prefix: "limits", title: "Limits"),
        Group(prefix: "timeouts", title: "Timeouts"),
        Group(prefix: "log", title: "Logs"),
        Group(prefix: "metrics", title: "Metrics and health"),
        Group(prefix: "admin", title: "Administration"),
    ]

    /// Every setting.
    public static let all: [Setting] = declarations()

    /// The declarations, one statement each (one big array literal of generic calls would make the
    /// type checker work much harder).
    private static func declarations() -> [Setting] {
        var all: [Setting] = []

        // Server
        all.append(Setting(
            "name", flag: "name", environment: "PARLEY_NAME", "NAME", \.serverName, .text,
            allowed: "a name that is not empty", where: { !$0.isEmpty },
            help: "Server name sent to clients in the hello."))
        all.append(Setting(
            "host", flag: "host", environment: "PARLEY_HOST", "ADDRESS", \.host, .text,
            allowed: "an address or host name", where: { !$0.isEmpty },
            help: "Address to listen on: 127.0.0.1 keeps the server to this machine, 0.0.0.0 or :: opens it."))
        all.append(Setting(
            "port", flag: "port", environment: "PARLEY_PORT", "N", \.port, .integer,
            allowed: "a port number 0-65535", where: { (0...65535).contains($0) },
            help: "Port of the native protocol (length-prefixed JSON frames); 0 picks a free one."))
        all.append(Setting(
            "dataDir", flag: "data-dir", environment: "PARLEY_DATA_DIR", "DIR", \.dataDirectory, .text,
            allowed: "a folder", where: { !$0.isEmpty },
            help: "Folder for the SQLite database (parley.sqlite); created if missing."))
        all.append(Setting(
            "durability", flag: "durability", environment: "PARLEY_DURABILITY", "normal|full", \.durability, .choice,
            allowed: "normal or full",
            help: "normal: a commit survives a crash of the process; full: every commit is fsynced (survives power loss)."))
        all.append(Setting(
            "threads", flag: "threads", environment: "PARLEY_THREADS", "N", \.threads, .integer,
            allowed: "a whole number, 0 or more", where: { $0 >= 0 },
            help: "Event loop threads; 0 = one per core."))
        all.append(Setting(
            "motd", flag: "motd", environment: "PARLEY_MOTD", "TEXT", \.motd, .text,
            help: "The welcome message every client shows at login (until `parley admin motd` changes it)."))

        // HTTP and the browser client
        all.append(Setting(
            "http.port", flag: "http-port", environment: "PARLEY_HTTP_PORT", "N", \.httpPort, .portOrOff,
            allowed: "a port number 0-65535, or off", where: { $0.map { (0...65535).contains($0) } ?? true },
            fixedFlags: [Setting.FixedFlag(flag: "no-http", value: "off")],
            help: "Port of HTTP: the browser client at / and its WebSocket at /ws; 0 picks a free one, off turns HTTP off."))
        all.append(Setting(
            "http.publicNames", flag: "public-name", environment: "PARLEY_PUBLIC_NAMES", "NAME", \.publicNames, .list,
            help: "Host names people use to reach this server (chat.example.org): pages from them may open the WebSocket. "
                + "Loopback names and IP addresses always may; a request's Host is never believed."))
        all.append(Setting(
            "http.allowedOrigins", flag: "allowed-origin", environment: "PARLEY_ALLOWED_ORIGINS", "ORIGIN", \.allowedOrigins, .list,
            allowed: "origins like https://chat.example.com (a scheme and a host, no path)",
            where: { $0.allSatisfy { ($0.hasPrefix("http://") || $0.hasPrefix("https://")) && !$0.hasSuffix("/") } },
            help: "Further origins (https://chat.example.com) whose pages may open the WebSocket, besides the server's own."))
        all.append(Setting(
            "http.trustedProxies", flag: "trusted-proxy", environment: "PARLEY_TRUSTED_PROXIES", "ADDRESS", \.trustedProxies, .list,
            help: "IP addresses of reverse proxies whose X-Forwarded-For names the client (for the login throttle and the "
                + "per-address limit); nobody else's is believed."))
        all.append(Setting(
            "http.idleTimeout", flag: "http-idle-timeout", environment: "PARLEY_HTTP_IDLE_TIMEOUT", "SECONDS", \.httpIdleTimeout, .number,
            allowed: "a number of seconds above 0", where: { $0 > 0 && $0.isFinite },
            help: "Seconds an HTTP keep-alive connection may wait for its next request before it is closed."))

        // TLS
        all.append(Setting(
            "tls.cert", flag: "tls-cert", environment: "PARLEY_TLS_CERT", "PATH", \.tlsCertificate, .optionalText,
            example: "/etc/parley/fullchain.pem",
            help: "PEM certificate (a chain allowed): the native and HTTP ports speak TLS. Give tls.key with it."))
        all.append(Setting(
            "tls.key", flag: "tls-key", environment: "PARLEY_TLS_KEY", "PATH", \.tlsKey, .optionalText,
            example: "/etc/parley/privkey.pem",
            help: "PEM private key of the certificate."))
        all.append(Setting(
            "tls.plainPort", flag: "plain-port", environment: "PARLEY_PLAIN_PORT", "N", \.plainPort, .portOrOff,
            allowed: "a port number 0-65535, or off", where: { $0.map { (0...65535).contains($0) } ?? true },
            example: "5556",
            help: "With TLS, a plain native port beside it on 127.0.0.1 only (for local tools); off = none."))

        // Accounts
        all.append(Setting(
            "accounts.guests", flag: "guests", environment: "PARLEY_GUESTS", "", \.guests, .toggle,
            allowed: "true or false",
            help: "Allow guests: a login with only a name, no account."))
        all.append(Setting(
            "accounts.registration", flag: "registration", environment: "PARLEY_REGISTRATION", "", \.registration, .toggle,
            allowed: "true or false",
            help: "Allow new accounts to register (existing accounts log in either way)."))
        all.append(Setting(
            "accounts.bcryptCost", flag: "bcrypt-cost", environment: "PARLEY_BCRYPT_COST", "N", \.bcryptCost, .integer,
            allowed: "a whole number 4-31", where: { (4...31).contains($0) },
            help: "bcrypt cost of new password hashes; 10 is about 50-100 ms per hash on one core."))

        // Limits
        all.append(Setting(
            "limits.maxFrame", flag: "max-frame", environment: "PARLEY_MAX_FRAME", "BYTES", \.limits.maxFrameSize, .integer,
            allowed: "a whole number of bytes, 1024 or more", where: { $0 >= 1024 },
            help: "Largest frame in bytes; a longer one closes the connection (FRAME_TOO_LARGE)."))
        all.append(Setting(
            "limits.maxText", flag: "max-text", environment: "PARLEY_MAX_TEXT", "N", \.limits.maxMessageLength, .integer,
            allowed: "a whole number, 1 or more", where: { $0 >= 1 },
            help: "Longest message in characters (MESSAGE_TOO_LONG)."))
        all.append(Setting(
            "limits.maxTextBytes", flag: "max-text-bytes", environment: "PARLEY_MAX_TEXT_BYTES", "BYTES", \.limits.maxTextBytes, .integer,
            allowed: "a whole number of bytes, 1 or more, at least 512 under limits.maxFrame", where: { $0 >= 1 },
            help: "Longest message in bytes of UTF-8 (MESSAGE_TOO_LONG)."))
        all.append(Setting(
            "limits.replay", flag: "replay-limit", environment: "PARLEY_REPLAY_LIMIT", "N", \.limits.replayLimit, .integer,
            allowed: "a whole number, 0 or more", where: { $0 >= 0 },
            help: "Messages replayed per conversation when a user logs in."))
        all.append(Setting(
            "limits.maxOutbox", flag: "max-outbox", environment: "PARLEY_MAX_OUTBOX", "BYTES", \.limits.maxOutboxBytes, .integer,
            allowed: "a whole number of bytes, 4096 or more", where: { $0 >= 4096 },
            help: "Bytes queued for one client before it is disconnected as a slow consumer."))
        all.append(Setting(
            "limits.presence", flag: "presence-limit", environment: "PARLEY_PRESENCE_LIMIT", "N", \.presenceThreshold, .integer,
            allowed: "a whole number, 0 or more", where: { $0 >= 0 },
            help: "Below this many users online everyone hears of every arrival and departure; at or above it, only the "
                + "members of one's groups, conversation partners and followed users, plus the online count."))
        all.append(Setting(
            "limits.maxConnections", flag: "max-connections", environment: "PARLEY_MAX_CONNECTIONS", "N", \.maxConnections, .integer,
            allowed: "a whole number, 0 or more", where: { $0 >= 0 },
            help: "Open connections in all, every port counted (TOO_MANY_CONNECTIONS, HTTP 503); kept below the "
                + "file-descriptor limit; 0 = no limit."))
        all.append(Setting(
            "limits.maxConnectionsPerAddress", flag: "max-connections-per-address", environment: "PARLEY_MAX_CONNECTIONS_PER_ADDRESS", "N",
            \.maxConnectionsPerAddress, .integer,
            allowed: "a whole number, 0 or more", where: { $0 >= 0 },
            help: "Open connections from one IP address, every port counted; 0 = no limit."))
        all.append(Setting(
            "limits.maxPasswordChecks", flag: "max-password-checks", environment: "PARLEY_MAX_PASSWORD_CHECKS", "N", \.maxPasswordChecks, .integer,
            allowed: "a whole number, 1 or more", where: { $0 >= 1 },
            help: "Password checks (bcrypt, for register and login) queued or running at once; past it SERVER_BUSY."))
        all.append(Setting(
            "limits.maxCommitBacklog", flag: "max-commit-backlog", environment: "PARLEY_MAX_COMMIT_BACKLOG", "N", \.maxCommitBacklog, .integer,
            allowed: "a whole number, 64 or more", where: { $0 >= 64 },
            help: "Writes waiting for the database before the server stops reading from senders until the backlog halves."))

        // Timeouts
        all.append(Setting(
            "timeouts.login", flag: "login-timeout", environment: "PARLEY_LOGIN_TIMEOUT", "SECONDS", \.loginTimeout, .number,
            allowed: "a number of seconds above 0", where: { $0 > 0 && $0.isFinite },
            help: "Seconds a new connection has to log in."))
        all.append(Setting(
            "timeouts.idle", flag: "idle-timeout", environment: "PARLEY_IDLE_TIMEOUT", "SECONDS", \.idleTimeout, .number,
            allowed: "a number of seconds above 0", where: { $0 > 0 && $0.isFinite },
            help: "Seconds of silence before the server pings a client; twice that disconnects it."))
        all.append(Setting(
            "timeouts.frame", flag: "frame-timeout", environment: "PARLEY_FRAME_TIMEOUT", "SECONDS", \.frameTimeout, .number,
            allowed: "a number of seconds above 0", where: { $0 > 0 && $0.isFinite },
            help: "Seconds a frame may take to arrive whole, from its first byte (FRAME_TIMEOUT)."))

        // Logs
        all.append(Setting(
            "log.level", flag: "log-level", environment: "PARLEY_LOG_LEVEL", "LEVEL", \.logLevel, .text,
            allowed: "one of " + Logger.Level.allCases.map(\.rawValue).joined(separator: ", "),
            where: { Logger.Level(rawValue: $0) != nil },
            help: "The least severe level written."))
        all.append(Setting(
            "log.format", flag: "log-format", environment: "PARLEY_LOG_FORMAT", "text|json", \.logFormat, .choice,
            allowed: "text or json",
            help: "text: one readable line per entry; json: one JSON object per line."))
        all.append(Setting(
            "log.dir", flag: "log-dir", environment: "PARLEY_LOG_DIR", "DIR", \.logDirectory, .optionalText,
            unset: "none (standard error only)", example: "/var/log/parley",
            help: "Folder for daily log files (parley-YYYY-MM-DD.log, by UTC date), written besides standard error."))

        // Metrics and health
        all.append(Setting(
            "metrics.port", flag: "metrics-port", environment: "PARLEY_METRICS_PORT", "N", \.metricsPort, .portOrOff,
            allowed: "a port number 0-65535, or off", where: { $0.map { (0...65535).contains($0) } ?? true },
            help: "Port of /metrics (Prometheus text format) and /health; off = no metrics listener."))
        all.append(Setting(
            "metrics.host", flag: "metrics-host", environment: "PARLEY_METRICS_HOST", "ADDRESS", \.metricsHost, .text,
            allowed: "an address or host name", where: { !$0.isEmpty },
            help: "Address of the metrics listener; keep it on loopback unless it is meant to be reached from elsewhere."))

        // Administration
        all.append(Setting(
            "admin.controlSocket", flag: "control-socket", environment: "PARLEY_CONTROL_SOCKET", "PATH", \.controlSocket, .optionalText,
            unset: "parley.sock in dataDir", example: "/run/parley/parley.sock",
            help: "Unix-domain socket through which `parley admin` talks to the server (mode 0600)."))
        all.append(Setting(
            "admin.console", flag: "console", environment: "PARLEY_CONSOLE", "", \.console, .toggle,
            allowed: "true or false",
            help: "Read operator commands (help, active users, exit, ...) from standard input when it is a terminal."))
        return all
    }

    /// Settings by file key.
    static let byKey: [String: Setting] = Dictionary(uniqueKeysWithValues: all.map { ($0.key, $0) })

    /// Settings by environment variable.
    static let byEnvironmentVariable: [String: Setting] =
        Dictionary(uniqueKeysWithValues: all.map { ($0.environmentVariable, $0) })

    /// The setting with this file key.
    public static func setting(key: String) -> Setting? { byKey[key] }

    /// The settings of a group, in order.
    public static func settings(in group: Group) -> [Setting] {
        all.filter { setting in
            guard let dot = setting.key.firstIndex(of: ".") else { return group.prefix.isEmpty }
            return setting.key[..<dot] == group.prefix
        }
    }

    /// Variables named `PARLEY_*` that other parts of Parley read, not `parley serve`: not
    /// warned about (`parley chat`'s password; the test, fuzzing and browser-test scripts').
    static let otherVariables: Set<String> = [
        "PARLEY_PASSWORD", "PARLEY_BIN", "PARLEY_FUZZ", "PARLEY_SKIP_BROWSER", "PARLEY_SKIP_TSAN", "PARLEY_SKIP_FUZZ",
    ]

    /// The name among `names` closest to `name` when it is close enough to be a likely typo.
    static func suggestion(for name: String, among names: [String]) -> String? {
        let scored = names.map { ($0, distance(name.lowercased(), $0.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(2, name.count / 4) else { return nil }
        return best.0
    }

    /// The Levenshtein distance between two texts.
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
