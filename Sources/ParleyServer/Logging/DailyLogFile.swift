#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import ParleyCore
import ParleyStore

/// The clock of log lines. Tests inject one that crosses midnight on demand.
public typealias LogClock = @Sendable () -> Timestamp

/// One log file per UTC date in a folder, `parley-YYYY-MM-DD.log`, switched at midnight without
/// losing, splitting or duplicating a line.
///
/// Every line of the process goes through the one writer, behind one lock. Inside it, the clock
/// is read, the time is put into the line (see ``LogLineFormat``), the file is switched when the
/// line's date is not the open file's (the new file is opened, then the old one closed), and the
/// whole line is written with one `write` call to a descriptor opened with `O_APPEND`. So lines
/// reach the files in the order of their times, each in the file of its own date, and a line is
/// never cut between two files or two writes. If the new day's file cannot be opened, lines go on
/// to the old one (and standard error says so once): late, not lost.
/// Thread safety: `Sendable`; the descriptor and the date are behind a lock.
public final class DailyLogFile: Sendable {
    /// The folder of the files.
    public let directory: String
    private let clock: LogClock
    private let state: Locked<State>

    private struct State {
        /// The open file's date, `YYYY-MM-DD`.
        var day: String
        var descriptor: Int32
        /// The date whose file could not be opened (reported once).
        var failedDay: String?
        var closed = false
    }

    /// Creates the folder if needed and opens the file of the clock's current date.
    /// - Parameter clock: the time of each line (the system's by default).
    /// - Throws: when the folder cannot be created or the file cannot be opened.
    public init(directory: String, clock: @escaping LogClock = { Timestamp.now }) throws {
        self.directory = directory
        self.clock = clock
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let day = Self.day(of: clock())
        let path = Self.path(directory: directory, day: day)
        let descriptor = openLogFile(path)
        guard descriptor >= 0 else {
            throw LogFileError(description: "cannot open the log file \(path): \(String(cString: strerror(errno)))")
        }
        state = Locked(State(day: day, descriptor: descriptor))
    }

    /// Thrown when the log file cannot be opened at start.
    public struct LogFileError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The file name for a date: `parley-2026-12-04.log`.
    public static func fileName(day: String) -> String { "parley-\(day).log" }

    static func path(directory: String, day: String) -> String {
        (directory as NSString).appendingPathComponent(fileName(day: day))
    }

    /// `YYYY-MM-DD` (UTC) of a time.
    static func day(of time: Timestamp) -> String { String(time.iso8601.prefix(10)) }

    /// Reads the clock, makes the line for that time, switches to that date's file if needed and
    /// writes the line with one `write` call, all under the writer's lock.
    /// - Parameter line: makes the whole line (ending in a line break) for the time given.
    /// - Returns: the line written (for standard error, so both carry the same time).
    @discardableResult
    public func append(_ line: (Timestamp) -> String) -> String {
        state.withLock { (s: inout State) -> String in
            let time = clock()
            let text = line(time)
            guard !s.closed else { return text }
            let day = Self.day(of: time)
            if day != s.day { switchFile(&s, to: day) }
            writeWhole(s.descriptor, text)
            return text
        }
    }

    /// Opens the file of `day`, then closes the old one. Under the lock.
    private func switchFile(_ s: inout State, to day: String) {
        let path = Self.path(directory: directory, day: day)
        let descriptor = openLogFile(path)
        guard descriptor >= 0 else {
            if s.failedDay != day {
                s.failedDay = day
                writeWhole(2, "parley: cannot open the log file \(path) (\(String(cString: strerror(errno)))); writing on to \(Self.fileName(day: s.day))\n")
            }
            return
        }
        _ = close(s.descriptor)
        s.descriptor = descriptor
        s.day = day
        s.failedDay = nil
    }

    /// Closes the open file; later lines are not written to a file. Idempotent.
    public func stop() {
        state.withLock { (s: inout State) -> Void in
            guard !s.closed else { return }
            s.closed = true
            _ = close(s.descriptor)
        }
    }

    /// The open file's date (for tests and operators).
    public var currentDay: String { state.withLock { $0.day } }
}

/// Opens (creating, mode 0640) a log file for appending; a descriptor or -1.
private func openLogFile(_ path: String) -> Int32 {
    open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
}

/// Writes all of `text` to `descriptor`: one `write` call, more only if the kernel took part of it
/// (a full disk, a signal); a line that cannot be written is dropped.
func writeWhole(_ descriptor: Int32, _ text: String) {
    var text = text
    text.withUTF8 { bytes in
        guard var next = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let written = write(descriptor, next, left)
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            left -= written
            next += written
        }
    }
}
