import Logging
import ParleyCore

/// Turns one log record into one line of ``LogFormat/text`` or ``LogFormat/json``.
///
/// A line is made in two steps so that the time can be read and rendered last, inside the log
/// writer's lock (see ``DailyLogFile``): ``compose(level:label:message:metadata:)`` does the work
/// (metadata sorted, quoted or JSON-escaped) without a lock, and ``LogLineFormat/Composed/line(at:)``
/// only puts the time in front. So lines are written in the order of their times and each one
/// lands in the file of its own date.
///
/// Text: `2026-12-04T10:00:00.123Z info parley: logged in address=127.0.0.1 user=alice`
/// (metadata sorted by key; a value with a space, `"` or `=`, or an empty one, in double quotes).
/// JSON: `{"time":"2026-12-04T10:00:00.123Z","level":"info","label":"parley","message":"logged in","metadata":{"user":"alice"}}`.
///
/// Control characters never reach a line raw: ``EscapingLogHandler`` escapes them before this
/// formatter sees the text, and the JSON form escapes whatever it is given besides.
/// Thread safety: a value type; `Sendable`.
public struct LogLineFormat: Sendable {
    public let format: LogFormat

    public init(_ format: LogFormat) { self.format = format }

    /// A line without its time: what goes before and after the time.
    public struct Composed: Sendable {
        let head: String
        let tail: String

        /// The whole line, ending in a line break, with `time` rendered as ISO 8601 UTC.
        public func line(at time: Timestamp) -> String {
            head + time.iso8601 + tail
        }
    }

    /// Everything of the line but its time.
    public func compose(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> Composed {
        switch format {
        case .text:
            var tail = " \(level.rawValue) \(label): \(message)"
            for key in metadata.keys.sorted() {
                tail += " \(key)=\(Self.textValue(metadata[key]!))"
            }
            tail += "\n"
            return Composed(head: "", tail: tail)
        case .json:
            var tail = "\",\"level\":"
            Self.appendJSONString(level.rawValue, to: &tail)
            tail += ",\"label\":"
            Self.appendJSONString(label, to: &tail)
            tail += ",\"message\":"
            Self.appendJSONString(message, to: &tail)
            tail += ",\"metadata\":"
            Self.appendJSON(.dictionary(metadata), to: &tail)
            tail += "}\n"
            return Composed(head: "{\"time\":\"", tail: tail)
        }
    }

    // MARK: Text

    /// A metadata value as text: bare, or in double quotes (with `"` and `\` escaped) when it is
    /// empty or holds a space, a `"` or a `=`, so that `key=value` pairs can be split again.
    static func textValue(_ value: Logger.Metadata.Value) -> String {
        let text: String = switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        case .array, .dictionary: value.description
        }
        guard text.isEmpty || text.utf8.contains(where: { $0 == 0x20 || $0 == 0x22 || $0 == 0x3D }) else { return text }
        var quoted = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            default: quoted.unicodeScalars.append(scalar)
            }
        }
        return quoted + "\""
    }

    // MARK: JSON

    /// Appends `value` as JSON: strings as strings, arrays as arrays, dictionaries as objects
    /// (keys sorted, so equal metadata gives equal lines).
    static func appendJSON(_ value: Logger.Metadata.Value, to out: inout String) {
        switch value {
        case .string(let string):
            appendJSONString(string, to: &out)
        case .stringConvertible(let convertible):
            appendJSONString(convertible.description, to: &out)
        case .array(let values):
            out += "["
            for (index, element) in values.enumerated() {
                if index > 0 { out += "," }
                appendJSON(element, to: &out)
            }
            out += "]"
        case .dictionary(let values):
            out += "{"
            for (index, key) in values.keys.sorted().enumerated() {
                if index > 0 { out += "," }
                appendJSONString(key, to: &out)
                out += ":"
                appendJSON(values[key]!, to: &out)
            }
            out += "}"
        }
    }

    /// Appends `text` as a JSON string (RFC 8259): `"` and `\` escaped, control characters
    /// (C0, DEL, C1) and the line and paragraph separators as `\uXXXX` or their short forms.
    static func appendJSONString(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029:
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
