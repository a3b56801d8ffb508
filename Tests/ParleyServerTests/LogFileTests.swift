import Foundation
import Logging
import ParleyCore
@testable import ParleyServer
import ParleyStore
import Testing

@Suite("Log files and log lines")
struct LogFileTests {
    /// 2026-12-04T23:59:52.000Z in milliseconds since the epoch.
    static let eightSecondsBeforeMidnight: Int64 = 1_796_428_792_000

    static func temporaryDirectory() -> String {
        NSTemporaryDirectory() + "parley-logs-" + UUID().uuidString
    }

    @Test("8 tasks × 2,000 lines while the clock crosses midnight: every line exactly once, whole, in the file of its date, in time order")
    func midnightUnderLoad() async throws {
        #expect(Timestamp(milliseconds: Self.eightSecondsBeforeMidnight).iso8601 == "2026-12-04T23:59:52.000Z")
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Each reading of the clock moves it 1 ms: midnight falls after about 8,000 of the 16,000 lines.
        let ticks = Locked<Int64>(0)
        let start = Self.eightSecondsBeforeMidnight
        let clock: LogClock = { Timestamp(milliseconds: start + ticks.withLock { t in t += 1; return t }) }
        let output = try LogOutput(format: .text, directory: directory, standardError: false, clock: clock)
        let logger = Logger(label: "test") { ParleyLogging.makeLogHandler(label: $0, level: .info, output: output) }
        let tasks = 8, lines = 2000
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<tasks {
                group.addTask {
                    for index in 0..<lines {
                        logger.info("line with some words in it", metadata: ["task": "\(task)", "i": "\(index)"])
                    }
                }
            }
        }
        output.stop()

        let files = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        #expect(files == ["parley-2026-12-04.log", "parley-2026-12-05.log"])
        var seen = [Int](repeating: 0, count: tasks * lines)
        for file in files {
            let day = String(file.dropFirst("parley-".count).prefix(10))
            let text = try String(contentsOfFile: (directory as NSString).appendingPathComponent(file), encoding: .utf8)
            #expect(text.hasSuffix("\n"), "\(file) ends with a whole line")
            var previous = ""
            let all = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            #expect(all.count > 1000, "\(file) has \(all.count) lines")
            for line in all {
                guard let match = line.wholeMatch(of: /(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}:\d{2}\.\d{3}Z) info test: line with some words in it i=(\d+) task=(\d+)/) else {
                    Issue.record("not a whole line in \(file): \(line)")
                    continue
                }
                #expect(String(match.1) == day, "a line of \(match.1) in \(file)")
                let time = String(match.1) + String(match.2)
                #expect(time > previous, "in time order: \(time) after \(previous)")
                previous = time
                seen[Int(match.4)! * lines + Int(match.3)!] += 1
            }
        }
        #expect(seen.allSatisfy { $0 == 1 }, "\(seen.filter { $0 == 0 }.count) lines missing, \(seen.filter { $0 > 1 }.count) duplicated")
    }

    @Test("a log folder is created when missing, and today's file is opened at once")
    func createsFolder() throws {
        let parent = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let directory = parent + "/logs/parley"
        let file = try DailyLogFile(directory: directory, clock: { Timestamp(milliseconds: Self.eightSecondsBeforeMidnight) })
        #expect(file.currentDay == "2026-12-04")
        #expect(FileManager.default.fileExists(atPath: directory + "/parley-2026-12-04.log"))
        file.stop()
    }

    @Test("text lines: the time, level, label and message, then the metadata sorted, quoted where it has spaces")
    func textLines() {
        let composed = LogLineFormat(.text).compose(level: .info, label: "parley", message: "disconnected",
                                                    metadata: ["user": "alice", "reason": "no answer to ping", "address": "127.0.0.1", "empty": ""])
        #expect(composed.line(at: Timestamp(milliseconds: 1_796_378_400_123)) ==
            "2026-12-04T10:00:00.123Z info parley: disconnected address=127.0.0.1 empty=\"\" reason=\"no answer to ping\" user=alice\n")
        let quoted = LogLineFormat.textValue(.string(#"say "hi"=\"#))
        #expect(quoted == #""say \"hi\"=\\""#)
    }

    @Test("JSON lines parse back to what was logged, whatever the text holds")
    func jsonLines() throws {
        let awkward = "quote \" backslash \\ newline \n tab \t bell \u{07} escape \u{1B} del \u{7F} é ✓ 😀 \u{2028}"
        let line = LogLineFormat(.json).compose(level: .warning, label: "parley", message: awkward, metadata: [
            "user": .string(awkward), "list": .array(["a", .string(awkward)]), "nested": .dictionary(["k": "v"]),
        ]).line(at: Timestamp(milliseconds: 1_796_378_400_123))
        #expect(line.hasSuffix("}\n"))
        #expect(!line.dropLast().contains("\n"), "one line")
        #expect(!line.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" }, "no raw control characters")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["time"] as? String == "2026-12-04T10:00:00.123Z")
        #expect(object["level"] as? String == "warning")
        #expect(object["label"] as? String == "parley")
        #expect(object["message"] as? String == awkward)
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(metadata["user"] as? String == awkward)
        #expect(metadata["list"] as? [String] == ["a", awkward])
        #expect((metadata["nested"] as? [String: String]) == ["k": "v"])
    }

    @Test("with the terminal hook set, lines meant for standard error go to it, escaped; without a folder no file is made")
    func terminalHook() throws {
        let captured = Locked<[String]>([])
        ParleyLogging.terminalWriter = { line in captured.withLock { $0.append(line) } }
        defer { ParleyLogging.terminalWriter = nil }
        let output = try LogOutput(format: .text, directory: nil, clock: { Timestamp(milliseconds: 1_796_378_400_123) })
        #expect(output.file == nil)
        let logger = Logger(label: "parley") { ParleyLogging.makeLogHandler(label: $0, level: .info, output: output) }
        logger.debug("below the level")
        logger.info("forged\n2026-12-04T00:00:00.000Z info parley: logged in", metadata: ["user": "x\u{1B}[2J"])
        let lines = captured.withLock { $0 }
        #expect(lines == ["2026-12-04T10:00:00.123Z info parley: forged\\n2026-12-04T00:00:00.000Z info parley: logged in user=x\\u{1B}[2J\n"])
    }

    @Test("log levels are named as swift-log names them; anything else is refused with the name")
    func levels() throws {
        #expect(try ParleyLogging.level("INFO") == .info)
        #expect(try ParleyLogging.level("trace") == .trace)
        #expect(throws: ServerConfiguration.InvalidSetting.self) { try ParleyLogging.level("verbose") }
    }
}
