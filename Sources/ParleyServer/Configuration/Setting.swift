import Configuration
import Foundation

/// One setting of `parley serve`, declared once: where it lives in ``ServerConfiguration``, its
/// three names (the key in a settings file, the command-line flag, the environment variable),
/// one line of help, its default (the value in `ServerConfiguration()`) and what values are
/// allowed. The command line, the environment, the settings file, `parley serve --help`, the
/// reference in docs/OPERATING.md and docs/parley.example.yaml are all made from these
/// declarations (``ServerSettings/all``), so they cannot disagree.
///
/// A value arrives either in the setting's own form (a number from a JSON file, a Boolean from
/// YAML) or as text (a flag, an environment variable, a quoted number, `off` for a port); both
/// go through the same rules and the same limits.
/// Thread safety: immutable; `Sendable`.
public struct Setting: Sendable {
    /// Key in a settings file: `name`, or `group.name` for one inside a group (`http.port` is
    /// `port` under `http:` in YAML, `{"http": {"port": 8080}}` in JSON).
    public let key: String
    /// The command-line flag, without its dashes (`http-port`). A switch also has `--no-<flag>`.
    public let flag: String
    /// The environment variable (`PARLEY_HTTP_PORT`); also the key in a `KEY=VALUE` file.
    public let environmentVariable: String
    /// What the value looks like in help (`N`, `PATH`, `normal|full`); empty for a switch.
    public let valueName: String
    /// One line of help.
    public let help: String
    /// What is allowed, in words that follow "expected" (`a port number 0-65535`); empty when
    /// any text is.
    public let allowed: String
    /// Further flags that each set a fixed value (`--no-http` sets `http.port` to `off`).
    public let fixedFlags: [FixedFlag]
    /// How the default reads when the setting is unset (`none`, `<dataDir>/parley.sock`).
    public let unsetText: String
    /// A value shown (commented out) in the example file for a setting that is unset by default.
    public let example: String?

    /// A flag that sets a fixed value, as `--no-http` sets `off`.
    /// Thread safety: a value type; `Sendable`.
    public struct FixedFlag: Sendable {
        /// The flag without its dashes.
        public let flag: String
        /// The value it stands for, as text.
        public let value: String
    }

    /// The shape of the setting on the command line.
    /// Thread safety: a value type; `Sendable`.
    public enum Form: Sendable {
        /// `--flag VALUE` (or `--flag=VALUE`); given twice, the last wins.
        case value
        /// `--flag` and `--no-flag`, without a value.
        case toggle
        /// `--flag VALUE`, repeatable; the items add up. In the environment and in a `KEY=VALUE`
        /// file the items are separated by commas; in YAML and JSON it is a list.
        case list
    }

    /// The shape of the setting on the command line.
    public var form: Form {
        switch type {
        case .bool: .toggle
        case .stringArray: .list
        default: .value
        }
    }

    /// The form asked of swift-configuration's providers.
    let type: ConfigType
    /// Sets the value a provider gave in the setting's own form; false when it is not allowed.
    let assignContent: @Sendable (inout ServerConfiguration, ConfigContent) -> Bool
    /// Sets the value given as text; false when it is not allowed.
    let assignText: @Sendable (inout ServerConfiguration, String) -> Bool
    /// The setting's own form of a text, or `nil` when the text is not allowed.
    let contentFromText: @Sendable (String) -> ConfigContent?
    /// Whether the value in a configuration is allowed.
    let isValid: @Sendable (ServerConfiguration) -> Bool
    /// The value in a configuration as text; `nil` when unset.
    let textIn: @Sendable (ServerConfiguration) -> String?
    /// The value in a configuration as a YAML value; `nil` when unset.
    let yamlIn: @Sendable (ServerConfiguration) -> String?

    /// Declares a setting.
    /// - Parameters:
    ///   - key: key in a settings file, `name` or `group.name`.
    ///   - flag: the flag without dashes.
    ///   - environment: the environment variable.
    ///   - valueName: the value's placeholder in help.
    ///   - keyPath: where the value lives in ``ServerConfiguration``; its value there in
    ///     `ServerConfiguration()` is the default.
    ///   - codec: how the value is read and written.
    ///   - allowed: what is allowed, in words following "expected".
    ///   - isAllowed: the rule behind `allowed`.
    ///   - unset: how an unset value reads in help and docs.
    ///   - example: a value for the example file when unset by default.
    ///   - fixedFlags: flags that each set a fixed value.
    ///   - help: one line of help.
    init<Value>(
        _ key: String, flag: String, environment: String, _ valueName: String,
        _ keyPath: any WritableKeyPath<ServerConfiguration, Value> & Sendable, _ codec: SettingCodec<Value>,
        allowed: String = "", where isAllowed: @escaping @Sendable (Value) -> Bool = { _ in true },
        unset: String = "none", example: String? = nil, fixedFlags: [FixedFlag] = [],
        help: String
    ) {
        self.key = key
        self.flag = flag
        self.environmentVariable = environment
        self.valueName = valueName
        self.help = help
        self.allowed = allowed
        self.fixedFlags = fixedFlags
        self.unsetText = unset
        self.example = example
        self.type = codec.type
        self.assignContent = { configuration, content in
            guard let value = codec.fromContent(content), isAllowed(value) else { return false }
            configuration[keyPath: keyPath] = value
            return true
        }
        self.assignText = { configuration, text in
            guard let value = codec.fromText(text), isAllowed(value) else { return false }
            configuration[keyPath: keyPath] = value
            return true
        }
        self.contentFromText = { text in
            guard let value = codec.fromText(text), isAllowed(value) else { return nil }
            return codec.toContent(value)
        }
        self.isValid = { configuration in isAllowed(configuration[keyPath: keyPath]) }
        self.textIn = { configuration in codec.toText(configuration[keyPath: keyPath]) }
        self.yamlIn = { configuration in codec.toYAML(configuration[keyPath: keyPath]) }
    }

    /// The setting's value in `configuration` as text (`5555`, `off`, `a,b`); `nil` when unset.
    public func text(in configuration: ServerConfiguration) -> String? {
        textIn(configuration)
    }

    /// The setting's value in `configuration` as help and docs show it: the text, `none` for an
    /// empty list, or ``unsetText``.
    public func shownValue(in configuration: ServerConfiguration) -> String {
        guard let text = textIn(configuration) else { return unsetText }
        return text.isEmpty ? "none" : text
    }

    /// Whether the setting's value in `configuration` is one of the allowed values.
    public func isAllowed(in configuration: ServerConfiguration) -> Bool {
        isValid(configuration)
    }

    /// The flags that set it: `--port N`; `--guests`, `--no-guests`; `--public-name NAME`;
    /// then any fixed flags (`--no-http`).
    public var flagForms: [String] {
        var forms: [String]
        switch form {
        case .value, .list: forms = ["--\(flag) \(valueName)"]
        case .toggle: forms = ["--\(flag)", "--no-\(flag)"]
        }
        return forms + fixedFlags.map { "--\($0.flag)" }
    }

    /// The flag as help shows it: `--port N`, `--guests, --no-guests`, `--public-name NAME ...`,
    /// followed by any fixed flags (`--no-http`).
    public var synopsis: String {
        var forms = flagForms
        if form == .list { forms[0] += " ..." }
        return forms.joined(separator: ", ")
    }
}

/// How values of one Swift type are read (from a provider's typed content, or from text) and
/// written (as content, text and YAML) for a ``Setting``.
/// Thread safety: only `@Sendable` closures; `Sendable`.
struct SettingCodec<Value>: Sendable {
    /// The form asked of the providers.
    var type: ConfigType
    /// The value from typed content; `nil` when the content is not one.
    var fromContent: @Sendable (ConfigContent) -> Value?
    /// The value as content of ``type`` (or, for a value that form cannot hold, such as a port
    /// that is `off`, as text, which is read back through ``fromText``).
    var toContent: @Sendable (Value) -> ConfigContent
    /// The value from text; `nil` when the text is not one.
    var fromText: @Sendable (String) -> Value?
    /// The value as text; `nil` when unset.
    var toText: @Sendable (Value) -> String?
    /// The value as YAML; `nil` when unset.
    var toYAML: @Sendable (Value) -> String?
}

extension SettingCodec where Value: FixedWidthInteger {
    /// A whole number.
    static var integer: SettingCodec<Value> {
        SettingCodec(
            type: .int,
            fromContent: { content in
                guard case .int(let number) = content else { return nil }
                return Value(exactly: number)
            },
            toContent: { .int(Int($0)) },
            fromText: { Value($0.trimmingCharacters(in: .whitespaces)) },
            toText: { "\($0)" },
            toYAML: { "\($0)" })
    }
}

extension SettingCodec where Value == Int? {
    /// A port number, or `off` (also `none`, `no`, `false` or nothing) for none.
    static var portOrOff: SettingCodec<Int?> {
        SettingCodec(
            type: .int,
            fromContent: { content -> Int?? in
                guard case .int(let number) = content else { return nil }
                return .some(number)
            },
            toContent: { port in port.map { ConfigContent.int($0) } ?? ConfigContent.string("off") },
            fromText: { text -> Int?? in
                let text = text.trimmingCharacters(in: .whitespaces).lowercased()
                if ["off", "none", "no", "false", ""].contains(text) { return .some(nil) }
                guard let number = Int(text) else { return nil }
                return .some(number)
            },
            toText: { port in port.map { "\($0)" } ?? "off" },
            toYAML: { port in port.map { "\($0)" } ?? "off" })
    }
}

extension SettingCodec where Value == Double {
    /// A number (of seconds, say): `30`, `0.5`.
    static var number: SettingCodec<Double> {
        SettingCodec(
            type: .double,
            fromContent: { content in
                switch content {
                case .double(let number): return number
                case .int(let number): return Double(number)
                default: return nil
                }
            },
            toContent: { .double($0) },
            fromText: { Double($0.trimmingCharacters(in: .whitespaces)) },
            toText: { SettingCodec.decimal($0) },
            toYAML: { SettingCodec.decimal($0) })
    }
}

extension SettingCodec where Value == Bool {
    /// A switch: `true`, `yes`, `on`, `1` or `false`, `no`, `off`, `0`.
    static var toggle: SettingCodec<Bool> {
        SettingCodec(
            type: .bool,
            fromContent: { content in
                guard case .bool(let value) = content else { return nil }
                return value
            },
            toContent: { .bool($0) },
            fromText: { text in
                switch text.trimmingCharacters(in: .whitespaces).lowercased() {
                case "true", "yes", "on", "1": return true
                case "false", "no", "off", "0": return false
                default: return nil
                }
            },
            toText: { $0 ? "true" : "false" },
            toYAML: { $0 ? "true" : "false" })
    }
}

extension SettingCodec where Value == String {
    /// Any text.
    static var text: SettingCodec<String> {
        SettingCodec(
            type: .string,
            fromContent: { content in
                guard case .string(let text) = content else { return nil }
                return text
            },
            toContent: { .string($0) },
            fromText: { $0 },
            toText: { $0 },
            toYAML: { SettingCodec.quoted($0) })
    }
}

extension SettingCodec where Value == String? {
    /// Text that may be left unset (a path); an empty text unsets it.
    static var optionalText: SettingCodec<String?> {
        SettingCodec(
            type: .string,
            fromContent: { content -> String?? in
                guard case .string(let text) = content else { return nil }
                return .some(text.isEmpty ? nil : text)
            },
            toContent: { .string($0 ?? "") },
            fromText: { text -> String?? in .some(text.isEmpty ? nil : text) },
            toText: { $0 },
            toYAML: { text in text.map { SettingCodec.quoted($0) } })
    }
}

extension SettingCodec where Value == [String] {
    /// A list of texts; as one text, items separated by commas. Empty items are dropped.
    static var list: SettingCodec<[String]> {
        SettingCodec(
            type: .stringArray,
            fromContent: { content in
                guard case .stringArray(let items) = content else { return nil }
                return items.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            },
            toContent: { .stringArray($0) },
            fromText: { text in
                text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            },
            toText: { $0.joined(separator: ",") },
            toYAML: { items in "[" + items.map { SettingCodec.quoted($0) }.joined(separator: ", ") + "]" })
    }
}

extension SettingCodec where Value: RawRepresentable<String> {
    /// One of the cases of a string enumeration, by its raw value (any case of letters).
    static var choice: SettingCodec<Value> {
        SettingCodec(
            type: .string,
            fromContent: { content in
                guard case .string(let text) = content else { return nil }
                return Value(rawValue: text.trimmingCharacters(in: .whitespaces).lowercased())
            },
            toContent: { .string($0.rawValue) },
            fromText: { Value(rawValue: $0.trimmingCharacters(in: .whitespaces).lowercased()) },
            toText: { $0.rawValue },
            toYAML: { $0.rawValue })
    }
}

extension SettingCodec {
    /// `30` for 30.0, `0.5` for 0.5.
    static func decimal(_ number: Double) -> String {
        if number.isFinite, number == number.rounded(), abs(number) < 1e15 { return String(Int(number)) }
        return String(number)
    }

    /// `text` as a YAML (and JSON) double-quoted string.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += String(format: "\\u%04X", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
