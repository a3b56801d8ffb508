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

    func configuration(environment env: [String: String] = ProcessInfo.processInfo.environment) throws -> ServerConfiguration {
        var c = ServerConfiguration()
        func int(_ key: String) throws -> Int? {
            guard let raw = env[key] else { return nil }
            guard let value = Int(raw) else { throw ValidationError("\(key) must be a whole number, not '\(raw)'") }
            return value
        }
        func double(_ key: String) throws -> Double? {
            guard let raw = env[key] else { return nil }
            guard let value = Double(raw) else { throw ValidationError("\(key) must be a number, not '\(raw)'") }
            return value
        }
        func bool(_ key: String) -> Bool? { env[key].map { ["1", "true", "yes", "on"].contains($0.lowercased()) } }
        c.host = host ?? env["PARLEY_HOST"] ?? c.host
        c.port = try port ?? int("PARLEY_PORT") ?? c.port
        c.dataDirectory = dataDirectory ?? env["PARLEY_DATA_DIR"] ?? c.dataDirectory
        c.serverName = name ?? env["PARLEY_NAME"] ?? c.serverName
        c.limits.maxFrameSize = try maxFrame ?? int("PARLEY_MAX_FRAME") ?? c.limits.maxFrameSize
        c.limits.maxMessageLength = try maxText ?? int("PARLEY_MAX_TEXT") ?? c.limits.maxMessageLength
        c.limits.replayLimit = try replayLimit ?? int("PARLEY_REPLAY_LIMIT") ?? c.limits.replayLimit
        c.limits.maxOutboxBytes = try maxOutbox ?? int("PARLEY_MAX_OUTBOX") ?? c.limits.maxOutboxBytes
        c.guests = guests ?? bool("PARLEY_GUESTS") ?? c.guests
        c.registration = registration ?? bool("PARLEY_REGISTRATION") ?? c.registration
        let cost = try bcryptCost ?? int("PARLEY_BCRYPT_COST") ?? Int(c.bcryptCost)
        guard (4...31).contains(cost) else { throw ValidationError("the bcrypt cost must be 4-31") }
        c.bcryptCost = UInt8(cost)
        let durabilityName = durability ?? env["PARLEY_DURABILITY"] ?? c.durability.rawValue
        guard let d = Durability(rawValue: durabilityName) else { throw ValidationError("durability is 'normal' or 'full'") }
        c.durability = d
        c.loginTimeout = try loginTimeout ?? double("PARLEY_LOGIN_TIMEOUT") ?? c.loginTimeout
        c.idleTimeout = try idleTimeout ?? double("PARLEY_IDLE_TIMEOUT") ?? c.idleTimeout
        c.threads = try threads ?? int("PARLEY_THREADS") ?? c.threads
        guard c.limits.maxFrameSize >= 1024 else { throw ValidationError("the maximum frame size must be at least 1024 bytes") }
        guard (0...65535).contains(c.port) else { throw ValidationError("the port must be 0-65535") }
        return c
    }

    func run() async throws {
        let configuration = try configuration()
        raiseFileLimit()
        let env = ProcessInfo.processInfo.environment
        let level = Logger.Level(rawValue: logLevel ?? env["PARLEY_LOG_LEVEL"] ?? "info") ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "parley")
        let server = try ParleyServer(configuration: configuration, logger: logger)
        let port = try await server.start()
        Console.line("parley \(configuration.serverName) listening on \(configuration.host):\(port) (native protocol); data in \(configuration.dataDirectory)")
        let group = ServiceGroup(configuration: .init(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
