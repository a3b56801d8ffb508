import Configuration
import Foundation

/// The arguments of `parley serve`, read against the declared settings: each setting's flag
/// (`--port 6000`, `--port=6000`, `--guests`/`--no-guests`, repeatable `--public-name NAME`,
/// `--no-http`), `--config FILE`, and what to do instead of serving (`--help`, `--print-config`,
/// `--print-config-reference`). An unknown flag, a missing value or a value that is not allowed
/// is an error naming it.
/// Thread safety: a value type; `Sendable`.
public struct ServerArguments: Sendable {
    /// What `parley serve` was asked to do.
    public enum Action: Sendable, Equatable {
        /// Run the server.
        case serve
        /// Print the help made from the declarations, and exit.
        case help
        /// Print the settings in effect as a YAML settings file, and exit.
        case printConfig
        /// Print the Markdown reference of every setting (docs/OPERATING.md), and exit.
        case printReference
    }

    /// What to do.
    public var action = Action.serve
    /// The settings file given with `--config`, if any.
    public var configFile: String?
    /// The settings given as flags, in their own form, by file key: what the command-line
    /// provider holds.
    var values: [AbsoluteConfigKey: ConfigValue] = [:]

    /// Flags other than the settings'.
    static let ownFlags = ["config", "print-config", "print-config-reference", "help"]

    /// Reads the arguments.
    /// - Parameter arguments: what follows `parley serve` on the command line.
    /// - Throws: ``ServerConfiguration/InvalidSetting`` naming an unknown flag, a flag without
    ///   its value, or a value that is not allowed.
    public init(_ arguments: [String]) throws {
        var lists: [String: [String]] = [:]
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            index += 1
            if argument == "-h" || argument == "--help" {
                action = .help
                continue
            }
            guard argument.hasPrefix("--"), argument.count > 2 else {
                throw ServerConfiguration.InvalidSetting(
                    "unexpected argument '\(argument)': settings are given as flags (--port 6000); `parley serve --help` lists them")
            }
            var name = String(argument.dropFirst(2))
            var attached: String?
            if let equals = name.firstIndex(of: "=") {
                attached = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            // The value: after `=`, or the next argument.
            func value(_ placeholder: String) throws -> String {
                if let attached { return attached }
                guard index < arguments.endIndex else {
                    throw ServerConfiguration.InvalidSetting("--\(name) needs a value (\(placeholder))")
                }
                index += 1
                return arguments[index - 1]
            }
            func noValue() throws {
                if attached != nil { throw ServerConfiguration.InvalidSetting("--\(name) takes no value") }
            }
            switch name {
            case "config":
                configFile = try value("FILE")
                continue
            case "print-config":
                try noValue()
                action = .printConfig
                continue
            case "print-config-reference":
                try noValue()
                action = .printReference
                continue
            default:
                break
            }
            guard let match = Self.flag(name) else {
                let known = ServerSettings.all.flatMap { setting -> [String] in
                    [setting.flag] + (setting.form == .toggle ? ["no-" + setting.flag] : []) + setting.fixedFlags.map(\.flag)
                } + Self.ownFlags
                let hint = ServerSettings.suggestion(for: name, among: known).map { " (did you mean --\($0)?)" } ?? ""
                throw ServerConfiguration.InvalidSetting("unknown option '--\(name)'\(hint); `parley serve --help` lists the settings")
            }
            let setting = match.setting
            let text: String
            if let fixed = match.fixed {
                try noValue()
                text = fixed
            } else {
                text = try value(setting.valueName)
            }
            guard let content = setting.contentFromText(text) else {
                throw ServerConfiguration.InvalidSetting("--\(name): '\(text)' is not allowed; expected \(setting.allowed)")
            }
            if setting.form == .list {
                lists[setting.key, default: []].append(text)
            } else {
                values[AbsoluteConfigKey(ConfigKey(setting.key))] = ConfigValue(content, isSecret: false)
            }
        }
        for (key, items) in lists {
            guard let setting = ServerSettings.byKey[key], let content = setting.contentFromText(items.joined(separator: ",")) else { continue }
            values[AbsoluteConfigKey(ConfigKey(key))] = ConfigValue(content, isSecret: false)
        }
    }

    /// The setting a flag names, with the text it stands for when it takes no value
    /// (`--guests` is `true`, `--no-guests` is `false`, `--no-http` is `off`).
    static func flag(_ name: String) -> (setting: Setting, fixed: String?)? {
        for setting in ServerSettings.all {
            if setting.flag == name { return (setting, setting.form == .toggle ? "true" : nil) }
            if setting.form == .toggle, name == "no-" + setting.flag { return (setting, "false") }
            if let fixed = setting.fixedFlags.first(where: { $0.flag == name }) { return (setting, fixed.value) }
        }
        return nil
    }
}
