import ArgumentParser
import Foundation
import Logging
import ParleyServer
import ParleyStore
import ServiceLifecycle

/// `parley serve`: runs the server until SIGINT/SIGTERM.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the chat server.",
        discussion: "Every option can also be set by an environment variable (shown in brackets); a flag on the command line wins.")

    @Option(help: "Address to listen on [PARLEY_HOST]. (default: 127.0.0.1)") var host: String?
    @Option(help: "Port of the native protocol; 0 picks a free one [PARLEY_PORT]. (default: 5555)") var port: Int?
    @Option(name: .customLong("data-dir"), help: "Folder for the SQLite database, created if missing [PARLEY_DATA_DIR]. (default: ./parley-data)")
    var dataDirectory: String?
    @Option(help: "Server name sent in the hello [PARLEY_NAME]. (default: parley)") var name: String?
    @Option(name: .customLong("max-frame"), help: "Largest frame in bytes [PARLEY_MAX_FRAME]. (default: 65536)") var maxFrame: Int?
    @Option(name: .customLong("max-text"), help: "Longest message in characters [PARLEY_MAX_TEXT]. (default: 4000)") var maxText: Int?
    @Option(name: .customLong("replay-limit"), help: "Messages replayed per conversation at login [PARLEY_REPLAY_LIMIT]. (default: 100)")
    var replayLimit: Int?
    @Option(name: .customLong("max-outbox"), help: "Bytes queued for one client before it is disconnected [PARLEY_MAX_OUTBOX]. (default: 4194304)")
    var maxOutbox: Int?
    @Flag(inversion: .prefixedNo, help: "Allow guests: login with a name only [PARLEY_GUESTS=1].") var guests: Bool?
    @Flag(inversion: .prefixedNo, help: "Allow registration [PARLEY_REGISTRATION=0 to close]. (default: on)") var registration: Bool?
    @Option(name: .customLong("bcrypt-cost"), help: "bcrypt cost of new password hashes, 4-31 [PARLEY_BCRYPT_COST]. (default: 10)")
    var bcryptCost: Int?
    @Option(help: "normal (survives a crash of the process) or full (fsync every commit) [PARLEY_DURABILITY]. (default: normal)")
    var durability: String?
    @Option(name: .customLong("login-timeout"), help: "Seconds a new connection has to log in [PARLEY_LOGIN_TIMEOUT]. (default: 30)")
    var loginTimeout: Double?
    @Option(name: .customLong("idle-timeout"), help: "Seconds of silence before a ping; twice that disconnects [PARLEY_IDLE_TIMEOUT]. (default: 300)")
    var idleTimeout: Double?
    @Option(help: "Event loop threads; 0 = one per core [PARLEY_THREADS]. (default: 0)") var threads: Int?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error [PARLEY_LOG_LEVEL]. (default: info)")
    var logLevel: String?

    @Option(help: "A settings file of PARLEY_*=value lines (see docs/parley.env.example); the environment and flags win over it.")
    var config: String?

    @Option(name: .customLong("frame-timeout"), help: "Seconds a frame may take to arrive whole [PARLEY_FRAME_TIMEOUT]. (default: 10)")
    var frameTimeout: Double?
    @Option(name: .customLong("max-text-bytes"), help: "Longest message in bytes of UTF-8 [PARLEY_MAX_TEXT_BYTES]. (default: 16384)")
    var maxTextBytes: Int?
    @Option(name: .customLong("presence-limit"), help: "Below this many users online, everyone hears of every arrival and departure [PARLEY_PRESENCE_LIMIT]. (default: 100)")
    var presenceLimit: Int?

    @Option(name: .customLong("max-connections"), help: "Open connections in all; 0 = no limit [PARLEY_MAX_CONNECTIONS]. (default: 20000)")
    var maxConnections: Int?
    @Option(name: .customLong("max-connections-per-address"), help: "Open connections from one IP address; 0 = no limit [PARLEY_MAX_CONNECTIONS_PER_ADDRESS]. (default: 64)")
    var maxConnectionsPerAddress: Int?
    @Option(name: .customLong("max-password-checks"), help: "Password checks queued or running at once before SERVER_BUSY [PARLEY_MAX_PASSWORD_CHECKS]. (default: 64)")
    var maxPasswordChecks: Int?
    @Option(name: .customLong("max-commit-backlog"), help: "Writes waiting for the database before senders are paused [PARLEY_MAX_COMMIT_BACKLOG]. (default: 65536)")
    var maxCommitBacklog: Int?

    @Option(name: .customLong("http-port"), help: "Port of HTTP: the browser client and its WebSocket; 0 picks a free one [PARLEY_HTTP_PORT]. (default: 8080)")
    var httpPort: Int?
    @Flag(name: .customLong("no-http"), help: "Do not serve HTTP (the browser client) [PARLEY_HTTP_PORT=off].") var noHTTP = false
    @Option(name: .customLong("allowed-origin"), help: "An origin (https://chat.example.com) whose pages may use the WebSocket besides the server's own; repeatable [PARLEY_ALLOWED_ORIGINS, comma-separated].")
    var allowedOrigins: [String] = []
    @Option(name: .customLong("trusted-proxy"), help: "A reverse proxy's IP address whose X-Forwarded-For is believed; repeatable [PARLEY_TRUSTED_PROXIES, comma-separated].")
    var trustedProxies: [String] = []
    @Option(name: .customLong("public-name"), help: "A host name (chat.example.org) people use to reach this server; pages from it may use the WebSocket; repeatable [PARLEY_PUBLIC_NAMES, comma-separated].")
    var publicNames: [String] = []
    @Option(name: .customLong("http-idle-timeout"), help: "Seconds an HTTP keep-alive connection may wait for its next request [PARLEY_HTTP_IDLE_TIMEOUT]. (default: 15)")
    var httpIdleTimeout: Double?

    /// The flags given, keyed like the environment (precedence is decided by `ServerConfiguration.resolve`).
    var flags: [String: String] {
        var f: [String: String] = [:]
        f["PARLEY_HOST"] = host
        f["PARLEY_PORT"] = port.map(String.init)
        f["PARLEY_DATA_DIR"] = dataDirectory
        f["PARLEY_NAME"] = name
        f["PARLEY_MAX_FRAME"] = maxFrame.map(String.init)
        f["PARLEY_MAX_TEXT"] = maxText.map(String.init)
        f["PARLEY_MAX_TEXT_BYTES"] = maxTextBytes.map(String.init)
        f["PARLEY_REPLAY_LIMIT"] = replayLimit.map(String.init)
        f["PARLEY_MAX_OUTBOX"] = maxOutbox.map(String.init)
        f["PARLEY_GUESTS"] = guests.map { $0 ? "1" : "0" }
        f["PARLEY_REGISTRATION"] = registration.map { $0 ? "1" : "0" }
        f["PARLEY_BCRYPT_COST"] = bcryptCost.map(String.init)
        f["PARLEY_DURABILITY"] = durability
        f["PARLEY_LOGIN_TIMEOUT"] = loginTimeout.map { String($0) }
        f["PARLEY_IDLE_TIMEOUT"] = idleTimeout.map { String($0) }
        f["PARLEY_FRAME_TIMEOUT"] = frameTimeout.map { String($0) }
        f["PARLEY_THREADS"] = threads.map(String.init)
        f["PARLEY_PRESENCE_LIMIT"] = presenceLimit.map(String.init)
        f["PARLEY_MAX_CONNECTIONS"] = maxConnections.map(String.init)
        f["PARLEY_MAX_CONNECTIONS_PER_ADDRESS"] = maxConnectionsPerAddress.map(String.init)
        f["PARLEY_MAX_PASSWORD_CHECKS"] = maxPasswordChecks.map(String.init)
        f["PARLEY_MAX_COMMIT_BACKLOG"] = maxCommitBacklog.map(String.init)
        f["PARLEY_HTTP_PORT"] = noHTTP ? "off" : httpPort.map(String.init)
        f["PARLEY_ALLOWED_ORIGINS"] = allowedOrigins.isEmpty ? nil : allowedOrigins.joined(separator: ",")
        f["PARLEY_TRUSTED_PROXIES"] = trustedProxies.isEmpty ? nil : trustedProxies.joined(separator: ",")
        f["PARLEY_PUBLIC_NAMES"] = publicNames.isEmpty ? nil : publicNames.joined(separator: ",")
        f["PARLEY_HTTP_IDLE_TIMEOUT"] = httpIdleTimeout.map { String($0) }
        return f
    }

    /// Defaults, then the settings file, then the environment, then the flags.
    func configuration(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ServerConfiguration {
        do {
            return try ServerConfiguration.resolve(file: config, environment: environment, flags: flags)
        } catch let error as ServerConfiguration.InvalidSetting {
            throw ValidationError(error.description)
        }
    }

    func run() async throws {
        limitMallocArenas()
        var configuration = try configuration()
        raiseFileLimit()
        let descriptors = openFileLimit()
        // (Until --log-level is part of the declared configuration.)
        if let level = logLevel ?? ProcessInfo.processInfo.environment["PARLEY_LOG_LEVEL"] { configuration.logLevel = level }
        // Standard error (or the console, when it owns the terminal) and, with --log-dir, one file
        // per UTC date; what strangers send (names, origins, addresses) is escaped before it is written.
        let logs = try ParleyLogging.bootstrap(configuration: configuration)
        defer { logs.stop() }
        let logger = Logger(label: "parley")
        // Every connection is a file descriptor: keep the cap below what the process may open, with
        // headroom for the database, the listeners and the log, so that a connection over it is
        // still accepted and told why instead of waiting unaccepted.
        // (0, no limit, is taken at its word: past the descriptors, accepting pauses.)
        let headroom = 64
        if descriptors > 0, configuration.maxConnections > descriptors - headroom {
            let capped = max(descriptors - headroom, 16)
            logger.warning("the file-descriptor limit is low: lowering the connection limit to stay below it", metadata: [
                "descriptors": "\(descriptors)", "max-connections": "\(capped)", "configured": "\(configuration.maxConnections)",
            ])
            configuration.maxConnections = capped
        }
        let server = try ParleyServer(configuration: configuration, logger: logger)
        // One server in this process: swift-metrics' global factory may be its own.
        server.bootstrapMetricsSystem()
        let port = try await server.start()
        Console.line("parley \(configuration.serverName) listening on \(configuration.host):\(port) (native protocol); data in \(configuration.dataDirectory)")
        if let httpPort = server.port(of: "http") {
            let shown = configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host
            Console.line("browser client: http://\(shown == "0.0.0.0" ? "localhost" : shown):\(httpPort)/")
        }
        if let metricsPort = server.port(of: "metrics") {
            let host = configuration.metricsHost.contains(":") ? "[\(configuration.metricsHost)]" : configuration.metricsHost
            Console.line("metrics: http://\(host):\(metricsPort)/metrics and /health")
        }
        let group = ServiceGroup(configuration: .init(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        // `parley admin shutdown` and the console's `exit` stop the server as SIGTERM does.
        server.onShutdownRequest { Task { await group.triggerGracefulShutdown() } }
        var console: ServerConsole? = nil
        if configuration.console && ServerConsole.available {
            console = ServerConsole(server: server, operatorName: Admin.loginName())
            console?.start()
        }
        defer { console?.stop() }
        try await group.run()
    }
}
