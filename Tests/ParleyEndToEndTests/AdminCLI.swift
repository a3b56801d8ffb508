import Foundation
import Testing

/// A program run to its end: its exit status and what it wrote (standard output and error together).
struct ProgramRun: Sendable {
    var status: Int32
    var output: String
}

/// Runs `executable` with `arguments` to its end and returns what it wrote. `input` is its whole
/// standard input (then closed); `environment` is added to this process's. Waits at most
/// `timeout` seconds: a program still running then (or when the test is cancelled) is
/// terminated, and the test records an issue, so that nothing outlives the test.
func runProgram(_ executable: URL, _ arguments: [String], input: String? = nil, environment: [String: String] = [:],
                timeout: Double = 30) async throws -> ProgramRun {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    let stdin = Pipe()
    process.standardInput = stdin
    try process.run()
    if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    try? stdin.fileHandleForWriting.close()
    let watchdog = Task {
        try await Task.sleep(for: .milliseconds(Int(timeout * 1000)))
        if process.isRunning {
            Issue.record("\(executable.lastPathComponent) \(arguments.joined(separator: " ")) still ran after \(timeout) s")
            process.terminate()
        }
    }
    defer { watchdog.cancel() }
    return await withTaskCancellationHandler {
        let text = await Task.detached { String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }.value
        await Task.detached { process.waitUntilExit() }.value
        return ProgramRun(status: process.terminationStatus, output: text)
    } onCancel: {
        if process.isRunning { process.terminate() }
    }
}
