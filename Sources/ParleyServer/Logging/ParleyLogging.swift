#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import ParleyCore
import ParleyStore

/// Parley's logging: swift-log with metadata, to standard error and, with a log folder, to one
/// file per UTC date (``DailyLogFile``), as text or JSON lines (``LogFormat``).
///
/// `parley serve` calls ``bootstrap(configuration:clock:)`` once, before it makes any logger.
/// Every handler it installs is wrapped in ``EscapingLogHandler``: what strangers send (names,
/// origins, addresses) cannot forge a line or drive a terminal.
///
/// The console (which owns the terminal while the operator types) sets ``terminalWriter``: lines
/// meant for standard error are then handed to it instead, so that it can print them above its
/// prompt rather than through it.
/// Thread safety: every member may be used from any thread.
public enum ParleyLogging {
    private static let terminal = Locked<(@Sendable (String) -> Void)?>(nil)
    /// Serialises writes to standard error (a line longer than a pipe's atomic size must not
    /// interleave with another).
    private static let standardErrorLock = Locked(())

    /// When set, receives each line (ending in a line break) that would be written to standard
    /// error, instead of it being written there; `nil` (the default) writes to standard error.
    /// It is called from the logging thread, outside every lock of the log writer, and must not
    /// block for long.
    public static var terminalWriter: (@Sendable (String) -> Void)? {
        get { terminal.withLock { $0 } }
        set { terminal.withLock { $0 = newValue } }
    }

    /// Installs Parley's log handler for the whole process (swift-log's `LoggingSystem`, which
    /// can be bootstrapped once): level, format and log folder from `configuration`.
    /// - Parameter clock: the time of each line (tests inject one).
    /// - Returns: the output, so that a caller may ``LogOutput/stop()`` its file at exit.
    /// - Throws: ``ServerConfiguration/InvalidSetting`` for an unknown level;
    ///   ``DailyLogFile/LogFileError`` (or a file-system error) when the log folder or today's
    ///   file cannot be made.
    @discardableResult
    public static func bootstrap(configuration: ServerConfiguration, clock: @escaping LogClock = { Timestamp.now }) throws -> LogOutput {
        let threshold = try Self.level(configuration.logLevel)
        let output = try LogOutput(configuration: configuration, clock: clock)
        LoggingSystem.bootstrap { label in
            Self.makeLogHandler(label: label, level: threshold, output: output)
        }
        return output
    }

    /// A handler writing to `output` at `level` and above, escaping untrusted text
    /// (``EscapingLogHandler`` around ``ParleyLogHandler``). For `LoggingSystem.bootstrap`, or
    /// for a single `Logger(label:factory:)` in tests.
    public static func makeLogHandler(label: String, level: Logger.Level, output: LogOutput) -> any LogHandler {
        var handler = ParleyLogHandler(label: label, output: output)
        handler.logLevel = level
        return EscapingLogHandler(handler)
    }

    /// The level named `name` (`trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`).
    /// - Throws: ``ServerConfiguration/InvalidSetting`` for any other name.
    public static func level(_ name: String) throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: name.lowercased()) else {
            let known = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
            throw ServerConfiguration.InvalidSetting(description: "the log level is one of \(known), not '\(name)'")
        }
        return level
    }

    /// Writes a line to the terminal hook or to standard error (one `write` call).
    static func writeToStandardError(_ line: String) {
        if let hook = terminalWriter {
            hook(line)
            return
        }
        standardErrorLock.withLock { _ in writeWhole(2, line) }
    }
}

/// Where log lines go: standard error (or ``ParleyLogging/terminalWriter``) and, with a log
/// folder, the day's file. One per process, shared by every handler.
/// Thread safety: `Sendable`; the file writer has its own lock.
public final class LogOutput: Sendable {
    public let format: LogLineFormat
    /// The day's file, when a log folder is configured.
    public let file: DailyLogFile?
    /// Whether lines also go to standard error.
    public let standardError: Bool
    private let clock: LogClock

    /// - Parameters:
    ///   - directory: the log folder (created if missing); `nil` for standard error only.
    ///   - standardError: whether lines also go to standard error.
    /// - Throws: when the folder or today's file cannot be made.
    public init(format: LogFormat, directory: String?, standardError: Bool = true, clock: @escaping LogClock = { Timestamp.now }) throws {
        self.format = LogLineFormat(format)
        self.file = try directory.map { try DailyLogFile(directory: $0, clock: clock) }
        self.standardError = standardError
        self.clock = clock
    }

    /// The output `configuration` asks for: its format and log folder, and standard error.
    public convenience init(configuration: ServerConfiguration, clock: @escaping LogClock = { Timestamp.now }) throws {
        try self.init(format: configuration.logFormat, directory: configuration.logDirectory, clock: clock)
    }

    /// Writes one record: the line is made once (its time read under the file's lock when there
    /// is a file) and the same line goes to the file and to standard error.
    public func emit(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) {
        let composed = format.compose(level: level, label: label, message: message, metadata: metadata)
        let line: String
        if let file {
            line = file.append { composed.line(at: $0) }
        } else {
            line = composed.line(at: clock())
        }
        if standardError { ParleyLogging.writeToStandardError(line) }
    }

    /// Closes the day's file (at exit).
    public func stop() { file?.stop() }
}

/// swift-log's handler for Parley: merges the handler's, the provider's and the record's
/// metadata (the record's wins) and hands the record to the process's ``LogOutput``.
/// Wrap it in ``EscapingLogHandler`` (``ParleyLogging/makeLogHandler(label:level:output:)`` does).
/// Thread safety: a value type; `Sendable` (its output is).
public struct ParleyLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public let label: String
    public let output: LogOutput

    public init(label: String, output: LogOutput) {
        self.label = label
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty {
            merged.merge(provided) { _, new in new }
        }
        if let explicit = event.metadata, !explicit.isEmpty {
            merged.merge(explicit) { _, new in new }
        }
        if let error = event.error {
            merged["error.message"] = .string(EscapingLogHandler.escape("\(error)"))
            merged["error.type"] = .string(String(reflecting: type(of: error)))
        }
        output.emit(level: event.level, label: label, message: event.message.description, metadata: merged)
    }
}
