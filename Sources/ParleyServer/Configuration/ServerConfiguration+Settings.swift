import Configuration
import Foundation
import ParleyCore

extension ServerConfiguration {
    /// A setting that could not be read, or a value that is not allowed. The description names
    /// the setting as it was given (the flag, the variable, or the key and file), the value and
    /// what is allowed; it is meant for the operator's eyes.
    /// Thread safety: a value type; `Sendable`.
    public struct InvalidSetting: Error, CustomStringConvertible, Sendable {
        public var description: String

        /// An error with this message.
        public init(_ description: String) { self.description = description }

        /// An error with this message.
        public init(description: String) { self.description = description }
    }

    /// The one builder of a configuration, used by `parley serve` and the tests alike: reads the
    /// declared settings (``ServerSettings/all``) through swift-configuration from, in order of
    /// precedence, the command-line flags, the `PARLEY_*` environment variables, the settings
    /// file given with `--config`, and the defaults; then checks the rules between settings.
    /// - Parameters:
    ///   - arguments: the arguments of `parley serve` (flags and `--config FILE`).
    ///   - environment: the process environment (only the settings' variables are read).
    /// - Returns: the configuration.
    /// - Throws: ``InvalidSetting`` naming an unknown flag or file key, or a value that is not
    ///   allowed and where it came from.
    public static func resolve(arguments: [String] = [], environment: [String: String] = [:]) async throws -> ServerConfiguration {
        try await resolve(ServerArguments(arguments), environment: environment)
    }

    /// The one builder of a configuration, for arguments already read (see
    /// ``resolve(arguments:environment:)``).
    /// - Parameters:
    ///   - arguments: the arguments of `parley serve`, read.
    ///   - environment: the process environment.
    /// - Returns: the configuration.
    /// - Throws: ``InvalidSetting``.
    public static func resolve(_ arguments: ServerArguments, environment: [String: String]) async throws -> ServerConfiguration {
        var sources = [SettingSource.commandLine(arguments), SettingSource.environment(environment)]
        if let file = arguments.configFile { sources.append(try await SettingSource.file(file)) }
        let access = LastAccess()
        let reader = ConfigReader(providers: sources.map(\.provider), accessReporter: access)
        var configuration = ServerConfiguration()
        for setting in ServerSettings.all {
            try setting.read(from: reader, sources: sources, access: access, into: &configuration)
        }
        try configuration.validate()
        return configuration
    }

    /// Checks every setting against its declared limits, and the rules between settings.
    /// - Throws: ``InvalidSetting`` naming the setting.
    public func validate() throws {
        for setting in ServerSettings.all where !setting.isAllowed(in: self) {
            throw InvalidSetting(
                "\(setting.key) (--\(setting.flag)): '\(setting.text(in: self) ?? "")' is not allowed; expected \(setting.allowed)")
        }
        guard limits.maxTextBytes <= limits.maxFrameSize - 512 else {
            throw InvalidSetting(
                "limits.maxTextBytes (--max-text-bytes) is \(limits.maxTextBytes): it must be at least 512 bytes under "
                    + "limits.maxFrame (--max-frame, \(limits.maxFrameSize)), room for the rest of the frame")
        }
        guard (tlsCertificate == nil) == (tlsKey == nil) else {
            throw InvalidSetting("TLS needs both tls.cert (--tls-cert) and tls.key (--tls-key); only one is given")
        }
        guard plainPort == nil || tlsCertificate != nil else {
            throw InvalidSetting(
                "tls.plainPort (--plain-port) is a plain port beside TLS; without tls.cert and tls.key the native port is plain already")
        }
    }

    /// Warnings about `PARLEY_*` variables in the environment that are not settings (a typo, or
    /// one from an older version): they are ignored, so the operator should hear of them. An
    /// unknown flag or file key stops start-up instead; the environment is shared with other
    /// programs, so it only warns.
    /// - Parameter environment: the process environment.
    /// - Returns: one message per such variable, sorted.
    public static func environmentWarnings(_ environment: [String: String]) -> [String] {
        let names = ServerSettings.all.map(\.environmentVariable)
        return environment.keys
            .filter { $0.hasPrefix("PARLEY_") && ServerSettings.byEnvironmentVariable[$0] == nil && !ServerSettings.otherVariables.contains($0) }
            .sorted()
            .map { name in
                let hint = ServerSettings.suggestion(for: name, among: names).map { " (did you mean \($0)?)" } ?? ""
                return "the environment variable \(name) is not a setting of parley serve\(hint); it is ignored"
            }
    }

    /// Reads `KEY=VALUE` lines (the systemd `EnvironmentFile=` form): `#` starts a comment line,
    /// blank lines are skipped, and a value may be wrapped in double quotes.
    /// - Parameters:
    ///   - text: the file's text.
    ///   - file: the file's name, for messages.
    /// - Returns: the values by key.
    /// - Throws: ``InvalidSetting`` naming a line that is not `KEY=VALUE`.
    public static func parseEnvironmentFile(_ text: String, file: String = "the settings file") throws -> [String: String] {
        var values: [String: String] = [:]
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw InvalidSetting("\(file), line \(number + 1): expected KEY=VALUE, not '\(line)'")
            }
            let key = String(line[..<equals]).trimmingCharacters(in: .whitespaces)
            var value = String(line[line.index(after: equals)...]).trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            values[key] = value
        }
        return values
    }
}

/// One place settings come from: a swift-configuration provider, and how a setting is named
/// there in messages (`--port`, `PARLEY_PORT`, `http.port in parley.yaml`).
/// Thread safety: immutable; `Sendable`.
struct SettingSource: Sendable {
    /// Where the values are.
    let provider: any ConfigProvider
    /// The setting's name in this source, for messages.
    let name: @Sendable (Setting) -> String

    /// The flags: an `InMemoryProvider` of the values ``ServerArguments`` read and checked.
    static func commandLine(_ arguments: ServerArguments) -> SettingSource {
        SettingSource(provider: InMemoryProvider(name: "command line", values: arguments.values), name: { "--\($0.flag)" })
    }

    /// The environment: swift-configuration's `EnvironmentVariablesProvider`, each setting's key
    /// mapped to its declared variable (`http.port` to `PARLEY_HTTP_PORT`).
    static func environment(_ variables: [String: String]) -> SettingSource {
        SettingSource(provider: environmentProvider(variables), name: { $0.environmentVariable })
    }

    /// `variables` as a provider of the settings, by their declared variable names.
    static func environmentProvider(_ variables: [String: String]) -> KeyMappingProvider<EnvironmentVariablesProvider> {
        EnvironmentVariablesProvider(environmentVariables: variables).mapKeys { key in
            guard let setting = ServerSettings.byKey[key.components.joined(separator: ".")] else { return key }
            return AbsoluteConfigKey([setting.environmentVariable])
        }
    }

    /// A settings file: YAML (`.yaml`, `.yml`) or JSON (`.json`) through swift-configuration's
    /// `FileProvider`, keys nested at the dots; any other name is read as `KEY=VALUE` lines of
    /// the settings' environment variables (the format of earlier versions). A key that is not a
    /// setting is an error.
    /// - Parameter path: the file.
    /// - Throws: ``ServerConfiguration/InvalidSetting`` when the file cannot be read or parsed, or
    ///   names an unknown key.
    static func file(_ path: String) async throws -> SettingSource {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ServerConfiguration.InvalidSetting("the settings file \(path) does not exist")
        }
        let format = (path as NSString).pathExtension.lowercased()
        guard ["yaml", "yml", "json"].contains(format) else { return try keyValueFile(path) }
        // FileProvider takes its path from a reader; the keys it finds are collected through the
        // secrets specifier, which the parser asks about every key of the file.
        let pathReader = ConfigReader(provider: InMemoryProvider(values: ["filePath": ConfigValue(.string(path), isSecret: false)]))
        let keys = Locked<[String]>([])
        let provider: any ConfigProvider
        do {
            if format == "json" {
                let options = JSONSnapshot.ParsingOptions(secretsSpecifier: .dynamic({ key, _ in
                    keys.withLock { $0.append(key) }
                    return false
                }))
                provider = try await FileProvider<JSONSnapshot>(parsingOptions: options, config: pathReader)
            } else {
                let options = YAMLSnapshot.ParsingOptions(secretsSpecifier: .dynamic({ key, _ in
                    keys.withLock { $0.append(key) }
                    return false
                }))
                provider = try await FileProvider<YAMLSnapshot>(parsingOptions: options, config: pathReader)
            }
        } catch {
            throw ServerConfiguration.InvalidSetting("cannot read the settings file \(path): \(error)")
        }
        let groups = Set(ServerSettings.groups.map(\.prefix).filter { !$0.isEmpty })
        let unknown = keys.withLock { $0 }.filter { key in
            guard ServerSettings.byKey[key] == nil else { return false }
            // `tls:` with every line under it commented out is an empty group, not a setting.
            return !(groups.contains(key) && Setting.text(in: provider, forKey: AbsoluteConfigKey([key])) == "")
        }
        if !unknown.isEmpty {
            throw unknownKeys(unknown, in: path, known: ServerSettings.all.map(\.key))
        }
        return SettingSource(provider: provider, name: { "\($0.key) in \(path)" })
    }

    /// A file of `PARLEY_*=VALUE` lines, read like the environment.
    static func keyValueFile(_ path: String) throws -> SettingSource {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ServerConfiguration.InvalidSetting("cannot read the settings file \(path): \(error.localizedDescription)")
        }
        let values = try ServerConfiguration.parseEnvironmentFile(text, file: path)
        let unknown = values.keys.filter { ServerSettings.byEnvironmentVariable[$0] == nil }
        if !unknown.isEmpty {
            throw unknownKeys(unknown, in: path, known: ServerSettings.all.map(\.environmentVariable))
        }
        return SettingSource(provider: environmentProvider(values), name: { "\($0.environmentVariable) in \(path)" })
    }

    /// The error for keys of a file that are not settings.
    static func unknownKeys(_ unknown: [String], in path: String, known: [String]) -> ServerConfiguration.InvalidSetting {
        let listed = unknown.sorted().map { key in
            "'\(key)'" + (ServerSettings.suggestion(for: key, among: known).map { " (did you mean \($0)?)" } ?? "")
        }
        let noun = unknown.count == 1 ? "key" : "keys"
        return ServerConfiguration.InvalidSetting(
            "\(path): unknown \(noun) \(listed.joined(separator: ", ")); `parley serve --help` and docs/OPERATING.md list the settings")
    }
}

/// Keeps the last access a `ConfigReader` reports: which providers it asked about a key, and
/// which one answered or failed. That tells where a value came from, so that a value that is
/// not allowed is named as it was given.
/// Thread safety: `Sendable`; the event is behind a lock.
struct LastAccess: AccessReporter {
    let event = Locked<AccessEvent?>(nil)

    func report(_ event: AccessEvent) {
        self.event.withLock { $0 = event }
    }

    /// The last event, forgotten.
    func take() -> AccessEvent? {
        event.withLock { last in
            defer { last = nil }
            return last
        }
    }
}

extension Setting {
    /// Reads the setting through `reader` and sets it in `configuration`; leaves the default when
    /// no source has it.
    ///
    /// The reader asks the sources in order and stops at the first that has the key (its
    /// `AccessEvent` lists one result per source asked, in that order). A source whose value is
    /// not in the setting's own form (a port given as `off`, a quoted number, one name where a
    /// list is expected) fails there; its value is then read as text and parsed by the setting's
    /// own rules, so every source accepts the same texts.
    /// - Throws: ``ServerConfiguration/InvalidSetting`` naming the source's name for the setting,
    ///   the value and what is allowed.
    func read(from reader: ConfigReader, sources: [SettingSource], access: LastAccess, into configuration: inout ServerConfiguration) throws {
        let configKey = ConfigKey(key)
        _ = access.take()
        let content: ConfigContent?
        switch type {
        case .int: content = reader.int(forKey: configKey).map { ConfigContent.int($0) }
        case .double: content = reader.double(forKey: configKey).map { ConfigContent.double($0) }
        case .bool: content = reader.bool(forKey: configKey).map { ConfigContent.bool($0) }
        case .stringArray: content = reader.stringArray(forKey: configKey).map { ConfigContent.stringArray($0) }
        default: content = reader.string(forKey: configKey).map { ConfigContent.string($0) }
        }
        guard let event = access.take() else {
            // (The reader reports every access; without a report, take the value as it is.)
            if let content, !assignContent(&configuration, content) { throw notAllowed(key, Self.text(of: content)) }
            return
        }
        for (index, result) in event.providerResults.enumerated() where index < sources.count {
            let source = sources[index]
            switch result.result {
            case .success(let lookup) where lookup.value == nil:
                continue
            case .success:
                if let content, event.conversionError == nil {
                    guard assignContent(&configuration, content) else {
                        throw notAllowed(source.name(self), Self.text(of: content))
                    }
                    return
                }
                fallthrough
            case .failure:
                guard let text = Self.text(in: source.provider, forKey: AbsoluteConfigKey(configKey)) else {
                    throw ServerConfiguration.InvalidSetting("\(source.name(self)): the value is not usable; expected \(allowed)")
                }
                guard assignText(&configuration, text) else { throw notAllowed(source.name(self), text) }
                return
            }
        }
    }

    /// The error for a value that is not allowed.
    func notAllowed(_ name: String, _ value: String) -> ServerConfiguration.InvalidSetting {
        ServerConfiguration.InvalidSetting("\(name): '\(value)' is not allowed; expected \(allowed)")
    }

    /// A provider's value for `key` as text, whatever its form.
    static func text(in provider: any ConfigProvider, forKey key: AbsoluteConfigKey) -> String? {
        for type in [ConfigType.string, .int, .double, .bool, .stringArray, .doubleArray] {
            if let result = try? provider.value(forKey: key, type: type), let value = result.value {
                return text(of: value.content)
            }
        }
        return nil
    }

    /// Content as text: lists joined with commas.
    static func text(of content: ConfigContent) -> String {
        switch content {
        case .string(let text): text
        case .int(let number): String(number)
        case .double(let number): SettingCodec<Double>.decimal(number)
        case .bool(let value): value ? "true" : "false"
        case .stringArray(let items): items.joined(separator: ",")
        case .intArray(let items): items.map { String($0) }.joined(separator: ",")
        case .doubleArray(let items): items.map { SettingCodec<Double>.decimal($0) }.joined(separator: ",")
        case .boolArray(let items): items.map { $0 ? "true" : "false" }.joined(separator: ",")
        case .bytes(let bytes): "\(bytes.count) bytes"
        case .byteChunkArray(let chunks): "\(chunks.count) byte chunks"
        }
    }
}
