import Foundation
import ParleyStore

extension ServerConfiguration {
    /// A setting that could not be read.
    public struct InvalidSetting: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Every variable ``init(environment:)`` reads.
    public static let environmentKeys = [
        "PARLEY_HOST", "PARLEY_PORT", "PARLEY_DATA_DIR", "PARLEY_NAME", "PARLEY_MAX_FRAME", "PARLEY_MAX_TEXT", "PARLEY_MAX_TEXT_BYTES",
        "PARLEY_REPLAY_LIMIT", "PARLEY_MAX_OUTBOX", "PARLEY_GUESTS", "PARLEY_REGISTRATION", "PARLEY_BCRYPT_COST",
        "PARLEY_DURABILITY", "PARLEY_LOGIN_TIMEOUT", "PARLEY_IDLE_TIMEOUT", "PARLEY_FRAME_TIMEOUT", "PARLEY_THREADS", "PARLEY_PRESENCE_LIMIT",
        "PARLEY_MAX_CONNECTIONS", "PARLEY_MAX_CONNECTIONS_PER_ADDRESS", "PARLEY_MAX_PASSWORD_CHECKS", "PARLEY_MAX_COMMIT_BACKLOG",
        "PARLEY_HTTP_PORT", "PARLEY_ALLOWED_ORIGINS", "PARLEY_TRUSTED_PROXIES", "PARLEY_PUBLIC_NAMES", "PARLEY_HTTP_IDLE_TIMEOUT",
    ]

    /// The defaults overridden by `PARLEY_*` variables (see README and `docs/parley.env.example`).
    /// - Throws: ``InvalidSetting`` naming the variable whose value is not usable.
    public init(environment env: [String: String]) throws {
        self.init()
        func int(_ key: String) throws -> Int? {
            guard let raw = env[key] else { return nil }
            guard let value = Int(raw) else { throw InvalidSetting(description: "\(key) must be a whole number, not '\(raw)'") }
            return value
        }
        func double(_ key: String) throws -> Double? {
            guard let raw = env[key] else { return nil }
            guard let value = Double(raw) else { throw InvalidSetting(description: "\(key) must be a number, not '\(raw)'") }
            return value
        }
        func bool(_ key: String) throws -> Bool? {
            guard let raw = env[key]?.lowercased() else { return nil }
            if ["1", "true", "yes", "on"].contains(raw) { return true }
            if ["0", "false", "no", "off"].contains(raw) { return false }
            throw InvalidSetting(description: "\(key) must be 1 or 0, not '\(raw)'")
        }
        host = env["PARLEY_HOST"] ?? host
        port = try int("PARLEY_PORT") ?? port
        dataDirectory = env["PARLEY_DATA_DIR"] ?? dataDirectory
        serverName = env["PARLEY_NAME"] ?? serverName
        limits.maxFrameSize = try int("PARLEY_MAX_FRAME") ?? limits.maxFrameSize
        limits.maxMessageLength = try int("PARLEY_MAX_TEXT") ?? limits.maxMessageLength
        limits.maxTextBytes = try int("PARLEY_MAX_TEXT_BYTES") ?? limits.maxTextBytes
        limits.replayLimit = try int("PARLEY_REPLAY_LIMIT") ?? limits.replayLimit
        limits.maxOutboxBytes = try int("PARLEY_MAX_OUTBOX") ?? limits.maxOutboxBytes
        guests = try bool("PARLEY_GUESTS") ?? guests
        registration = try bool("PARLEY_REGISTRATION") ?? registration
        if let cost = try int("PARLEY_BCRYPT_COST") {
            guard (4...31).contains(cost) else { throw InvalidSetting(description: "PARLEY_BCRYPT_COST must be 4-31") }
            bcryptCost = UInt8(cost)
        }
        if let raw = env["PARLEY_DURABILITY"] {
            guard let value = Durability(rawValue: raw) else { throw InvalidSetting(description: "PARLEY_DURABILITY is 'normal' or 'full'") }
            durability = value
        }
        loginTimeout = try double("PARLEY_LOGIN_TIMEOUT") ?? loginTimeout
        idleTimeout = try double("PARLEY_IDLE_TIMEOUT") ?? idleTimeout
        frameTimeout = try double("PARLEY_FRAME_TIMEOUT") ?? frameTimeout
        httpIdleTimeout = try double("PARLEY_HTTP_IDLE_TIMEOUT") ?? httpIdleTimeout
        threads = try int("PARLEY_THREADS") ?? threads
        presenceThreshold = try int("PARLEY_PRESENCE_LIMIT") ?? presenceThreshold
        maxConnections = try int("PARLEY_MAX_CONNECTIONS") ?? maxConnections
        maxConnectionsPerAddress = try int("PARLEY_MAX_CONNECTIONS_PER_ADDRESS") ?? maxConnectionsPerAddress
        maxPasswordChecks = try int("PARLEY_MAX_PASSWORD_CHECKS") ?? maxPasswordChecks
        maxCommitBacklog = try int("PARLEY_MAX_COMMIT_BACKLOG") ?? maxCommitBacklog
        if let raw = env["PARLEY_HTTP_PORT"] {
            if ["off", "no", "none", ""].contains(raw.lowercased()) {
                httpPort = nil
            } else {
                httpPort = try int("PARLEY_HTTP_PORT")
            }
        }
        func list(_ key: String) -> [String]? {
            env[key].map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        }
        allowedOrigins = list("PARLEY_ALLOWED_ORIGINS") ?? allowedOrigins
        trustedProxies = list("PARLEY_TRUSTED_PROXIES") ?? trustedProxies
        publicNames = list("PARLEY_PUBLIC_NAMES") ?? publicNames
    }

    /// The one place settings are combined, used by `parley serve` and the tests alike: the
    /// defaults, then the settings file, then the environment, then the command line's flags
    /// (given as `PARLEY_*` keys, so each flag and its variable are one setting). Later wins.
    /// - Parameters:
    ///   - file: a settings file of `PARLEY_*=value` lines, if any.
    ///   - environment: the process environment (only `PARLEY_*` keys are read).
    ///   - flags: settings from the command line, keyed like the environment.
    /// - Throws: ``InvalidSetting`` for an unreadable file or a bad value, naming it.
    public static func resolve(file: String? = nil, environment: [String: String] = [:], flags: [String: String] = [:]) throws -> ServerConfiguration {
        var values: [String: String] = [:]
        if let file {
            let text: String
            do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
                throw InvalidSetting(description: "cannot read the settings file \(file): \(error.localizedDescription)")
            }
            values = try parseEnvironmentFile(text)
        }
        values.merge(environment.filter { $0.key.hasPrefix("PARLEY_") }) { _, later in later }
        values.merge(flags) { _, later in later }
        let configuration = try ServerConfiguration(environment: values)
        try configuration.validate()
        return configuration
    }

    /// Checks ranges that every source of settings must respect.
    public func validate() throws {
        guard limits.maxFrameSize >= 1024 else { throw InvalidSetting(description: "the maximum frame size must be at least 1024 bytes") }
        guard (0...65535).contains(port) else { throw InvalidSetting(description: "the port must be 0-65535") }
        if let httpPort, !(0...65535).contains(httpPort) { throw InvalidSetting(description: "the HTTP port must be 0-65535") }
        if let origin = allowedOrigins.first(where: { !($0.hasPrefix("http://") || $0.hasPrefix("https://")) || $0.hasSuffix("/") }) {
            throw InvalidSetting(description: "an allowed origin is a scheme and host like https://chat.example.com, not '\(origin)'")
        }
        guard (4...31).contains(bcryptCost) else { throw InvalidSetting(description: "the bcrypt cost must be 4-31") }
        guard limits.maxTextBytes >= 1, limits.maxTextBytes <= limits.maxFrameSize - 512 else {
            throw InvalidSetting(description: "the text limit in bytes must be positive and at least 512 bytes under the frame size")
        }
        guard frameTimeout > 0, loginTimeout > 0, idleTimeout > 0, httpIdleTimeout > 0 else {
            throw InvalidSetting(description: "timeouts must be more than 0 seconds")
        }
        guard maxConnections >= 0, maxConnectionsPerAddress >= 0 else {
            throw InvalidSetting(description: "connection limits must be 0 (no limit) or more")
        }
        guard maxPasswordChecks >= 1, maxCommitBacklog >= 64 else {
            throw InvalidSetting(description: "the password-check queue must be at least 1 and the commit backlog at least 64")
        }
        guard presenceThreshold >= 0 else { throw InvalidSetting(description: "the presence limit must be 0 or more") }
        guard limits.maxMessageLength >= 1, limits.replayLimit >= 0, limits.maxOutboxBytes >= 4096 else {
            throw InvalidSetting(description: "text length, replay limit and outbox must be positive (outbox at least 4096)")
        }
    }

    /// Reads `KEY=VALUE` lines (the systemd `EnvironmentFile` form): `#` starts a comment line,
    /// blank lines are skipped, and a value may be wrapped in double quotes.
    public static func parseEnvironmentFile(_ text: String) throws -> [String: String] {
        var values: [String: String] = [:]
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw InvalidSetting(description: "line \(number + 1): expected KEY=VALUE")
            }
            let key = String(line[..<equals]).trimmingCharacters(in: .whitespaces)
            var value = String(line[line.index(after: equals)...]).trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            values[key] = value
        }
        return values
    }
}

