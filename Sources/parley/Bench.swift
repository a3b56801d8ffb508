import ArgumentParser
import Dispatch
import Foundation
import NIOCore
import NIOPosix
import ParleyClient
import ParleyCore
import ParleyWire
import Synchronization

/// `parley bench`: N clients in R groups, S senders posting M messages each; prints one line with
/// deliveries per second, latency from send to receipt, and the server's resident memory.
/// With `--idle N` it instead measures server memory per idle logged-in connection.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput, latency and memory (see docs/BENCHMARKS.md).",
        discussion: """
            Without --port, starts its own server (this executable, `serve --port 0 --bcrypt-cost 4 --guests`)
            on a temporary data directory and reads its memory from /proc. With --port, uses a running server
            (pass --server-pid to report its memory).
            """)

    @Option(help: "Server address.") var host = "127.0.0.1"
    @Option(help: "Port of a running server; without it the bench starts its own.") var port: Int?
    @Option(name: .customLong("server-pid"), help: "Pid of a running server, to read its memory.") var serverPID: Int?
    @Option(help: "Connected clients.") var clients = 1000
    @Option(help: "Groups the clients are spread over.") var groups = 10
    @Option(help: "Clients that send.") var senders = 100
    @Option(help: "Messages each sender posts.") var messages = 100
    @Option(help: "Total messages per second; 0 = as fast as possible.") var rate = 0
    @Option(help: "At full speed: messages each sender keeps unacknowledged (0 = send all at once).") var window = 1
    @Option(help: "Bytes of text per message (at least 24).") var size = 64
    @Option(help: "Instead of sending: hold this many idle logged-in connections and report memory per connection.")
    var idle: Int?
    @Option(help: "Instead of sending: this many registered users in N/10 groups all log in at once; report time, server CPU and frames per client.")
    var storm: Int?
    @Flag(name: .customLong("storm-passwords"), help: "With --storm: every user logs in with the password (a bcrypt check each) instead of the login token a real client keeps for reconnecting.")
    var stormPasswords = false
    @Flag(name: .customLong("websocket"), help: "Run the load over WebSocket (the browser client's transport) instead of native TCP; with --port, give the HTTP port.")
    var webSocket = false
    @Option(help: "Seconds to wait for all deliveries.") var timeout: Double = 120
    @Option(help: "Event loop threads of the load generator.") var threads = 2
    @Option(name: .customLong("server-binary"), help: "The parley executable to start as the server (default: this one), to compare builds side by side.")
    var serverBinary: String?
        @Option(help: "Extra arguments for the server the bench starts, e.g. --server-args='--durability full'.")
    var serverArgs: String = ""

    func run() async throws {
        raiseFileLimit()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        var child: Process? = nil
        var dataDir: String? = nil
        let port: Int
        var pid = serverPID
        if let storm {
            try await runStorm(users: storm, group: group)
            try await group.shutdownGracefully()
            return
        }
        if let given = self.port {
            port = given
        } else {
            let dir = NSTemporaryDirectory() + "parley-bench-" + UUID().uuidString
            dataDir = dir
            let (process, p) = try startServer(dataDir: dir, http: webSocket)
            child = process
            port = p
            pid = Int(process.processIdentifier)
        }
        defer {
            if let child {
                child.terminate()
                child.waitUntilExit()
            }
            if let dataDir { try? FileManager.default.removeItem(atPath: dataDir) }
        }
        if let idle {
            try await runIdle(count: idle, port: port, pid: pid, group: group)
        } else {
            try await runLoad(port: port, pid: pid, group: group)
        }
        try await group.shutdownGracefully()
    }

    // MARK: Load

    func runLoad(port: Int, pid: Int?, group: MultiThreadedEventLoopGroup) async throws {
        guard clients >= groups, groups >= 1, senders <= clients, size >= 24 else {
            throw ValidationError("need clients >= groups >= 1, senders <= clients, size >= 24")
        }
        let run = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let start = DispatchTime.now().uptimeNanoseconds
        let stats = (0..<clients).map { _ in ReceiverStats() }

        // Connect and log in, 50 at a time.
        var connected: [ParleyClient] = []
        for batch in stride(from: 0, to: clients, by: 50) {
            let made = try await withThrowingTaskGroup(of: (Int, ParleyClient).self) { tasks in
                for i in batch..<min(batch + 50, clients) {
                    tasks.addTask {
                        let stat = stats[i]
                        let client = try await ParleyClient.connect(host: host, port: port, timeout: 30, group: group, webSocket: webSocket) { payload in
                            stat.receive(payload, start: start)
                        }
                        let name = "b\(run)-\(i)"
                        try await client.register(name, password: "bench-password")
                        try await client.login(name, password: "bench-password", timeout: 60)
                        _ = try await client.next(timeout: 60) { if case .replayEnd = $0 { true } else { false } }
                        return (i, client)
                    }
                }
                var made: [(Int, ParleyClient)] = []
                for try await pair in tasks { made.append(pair) }
                return made.sorted { $0.0 < $1.0 }.map(\.1)
            }
            connected += made
        }
        // Groups: client g creates group g; everyone else joins group i % groups.
        let groupName = { (g: Int) in "b\(run)-g\(g)" }
        for g in 0..<groups { try await connected[g].request(.group(.create(group: groupName(g), inviteOnly: false))) }
        let everyone = connected
        let groupCount = groups
        for batch in stride(from: groups, to: clients, by: 100) {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for i in batch..<min(batch + 100, clients) {
                    let name = "b\(run)-g\(i % groupCount)"
                    tasks.addTask { try await everyone[i].request(.group(.join(group: name)), timeout: 60) }
                }
                try await tasks.waitForAll()
            }
        }
        let membersPerGroup = (0..<groups).map { g in (0..<clients).filter { $0 % groups == g }.count }
        // Senders are spread evenly over the clients (and so over the groups).
        let senderIndexes = (0..<senders).map { $0 * clients / senders }
        let expected = senderIndexes.reduce(0) { $0 + membersPerGroup[$1 % groups] * messages }
        for stat in stats { stat.reset() }
        let padding = String(repeating: "x", count: max(0, size - 22))
        let rssBefore = pid.flatMap(residentBytes)
        let cpuBefore = pid.flatMap(cpuSeconds)

        FileHandle.standardError.write(Data("bench: \(clients) clients logged in and in \(groups) groups; sending\n".utf8))
        let sendStart = DispatchTime.now().uptimeNanoseconds
        if rate <= 0 && window > 0 {
            // Closed loop: each sender keeps `window` messages in flight and sends the next one
            // when an acknowledgement arrives (on the client's event loop).
            for s in senderIndexes {
                let client = connected[s]
                let room = groupName(s % groups)
                let send: @Sendable () -> Void = {
                    let now = DispatchTime.now().uptimeNanoseconds - start
                    try? client.send(.send(.room(room), text: "t=\(now);\(padding)"), id: .int(1))
                }
                stats[s].startSending(total: messages, send: send)
                for _ in 0..<min(window, messages) { stats[s].sendNext() }
            }
        } else if rate <= 0 {
            for round in 0..<messages {
                for s in senderIndexes {
                    let now = DispatchTime.now().uptimeNanoseconds - start
                    try connected[s].send(.send(.room(groupName(s % groups)), text: "t=\(now);\(round);\(padding)"))
                }
            }
        } else {
            // Paced: one tick per millisecond sends whatever is due, round-robin over the senders.
            let total = senders * messages
            var sent = 0
            while sent < total {
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - sendStart) / 1e9
                let due = min(total, Int(elapsed * Double(rate)) + 1)
                while sent < due {
                    let s = senderIndexes[sent % senders]
                    let now = DispatchTime.now().uptimeNanoseconds - start
                    try connected[s].send(.send(.room(groupName(s % groups)), text: "t=\(now);\(sent);\(padding)"))
                    sent += 1
                }
                try await Task.sleep(for: .microseconds(500))
            }
        }
        // Wait for every delivery (or the timeout).
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeout * 1e9)
        var delivered = 0
        while DispatchTime.now().uptimeNanoseconds < deadline {
            delivered = stats.reduce(0) { $0 + $1.count }
            if delivered >= expected { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        let lastReceipt = stats.map(\.lastReceipt).max() ?? 0
        let elapsed = Double(lastReceipt + start - sendStart) / 1e9
        var latencies = stats.flatMap(\.latencies)
        latencies.sort()
        func pct(_ p: Double) -> Double {
            latencies.isEmpty ? 0 : Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1e6
        }
        let rss = pid.flatMap(residentBytes)
        let cpuAfter = pid.flatMap(cpuSeconds)
        var line = (webSocket ? "transport=websocket " : "transport=native ") + "clients=\(clients) groups=\(groups) senders=\(senders) sent=\(senders * messages)"
        line += " expected=\(expected) delivered=\(delivered) lost=\(expected - delivered)"
        line += " seconds=\(String(format: "%.3f", elapsed))"
        line += " deliveries_per_s=\(Int(Double(delivered) / max(elapsed, 1e-9)))"
        line += rate > 0 ? " rate=\(rate)/s" : (window > 0 ? " window=\(window)" : " window=all")
        line += String(format: " p50_ms=%.3f p99_ms=%.3f max_ms=%.3f", pct(0.5), pct(0.99), latencies.isEmpty ? 0 : Double(latencies.last!) / 1e6)
        if let rssBefore, let rss {
            line += " server_rss_mib=\(String(format: "%.1f", Double(rss) / 1_048_576)) (before sending \(String(format: "%.1f", Double(rssBefore) / 1_048_576)))"
        } else {
            line += " server_rss=unknown"
        }
        if let cpuBefore, let cpuAfter, delivered > 0 {
            line += String(format: " server_cpu_s=%.2f server_cpu_us_per_delivery=%.3f", cpuAfter - cpuBefore, (cpuAfter - cpuBefore) * 1e6 / Double(delivered))
        }
        Console.line(line)
        for client in connected { try? await client.channel.close() }
        if delivered < expected { throw ExitCode(2) }
    }

    // MARK: Idle connections

    func runIdle(count: Int, port: Int, pid: Int?, group: MultiThreadedEventLoopGroup) async throws {
        guard let pid else { throw ValidationError("--idle needs the server's memory: start no server, or pass --server-pid") }
        // Warm up: a few connections first so one-off allocations are not counted per connection.
        var held: [ParleyClient] = []
        held += try await connectGuests(100, from: 0, port: port, group: group)
        // The server returns memory freed after bursts every 10 s; measure after that.
        try await Task.sleep(for: .seconds(11))
        let before = residentBytes(pid) ?? 0
        held += try await connectGuests(count, from: 100, port: port, group: group)
        // Every session is attached once `who` answers with everyone.
        let online = try await held.last!.request(.who(), timeout: 300).count ?? 0
        try await Task.sleep(for: .seconds(11))
        let after = residentBytes(pid) ?? 0
        let per = Double(Int(after) - Int(before)) / Double(count)
        Console.line("idle_connections=\(count) online=\(online) server_rss_before_mib=\(String(format: "%.1f", Double(before) / 1_048_576)) server_rss_after_mib=\(String(format: "%.1f", Double(after) / 1_048_576)) bytes_per_connection=\(Int(per))")
        for client in held { try? await client.channel.close() }
    }

    func connectGuests(_ count: Int, from offset: Int, port: Int, group: MultiThreadedEventLoopGroup) async throws -> [ParleyClient] {
        let presenceKey = Array(#""presence""#.utf8)
        var all: [ParleyClient] = []
        for batch in stride(from: 0, to: count, by: 200) {
            all += try await withThrowingTaskGroup(of: ParleyClient.self) { tasks in
                for i in batch..<min(batch + 200, count) {
                    tasks.addTask {
                        // Presence events (everyone sees everyone arrive) are dropped unread.
                        let client = try await ParleyClient.connect(host: host, port: port, timeout: 30, group: group) { payload in
                            payload.contains(presenceKey)
                        }
                        try await client.guest("idle\(offset + i)")
                        _ = try await client.next(timeout: 60) { if case .replayEnd = $0 { true } else { false } }
                        client.clearEvents()
                        return client
                    }
                }
                var made: [ParleyClient] = []
                for try await c in tasks { made.append(c) }
                return made
            }
        }
        return all
    }

    // MARK: Server process

    /// Starts the server; returns it with its native port, or with its HTTP port when `http`.
    func startServer(dataDir: String, http: Bool = false) throws -> (Process, Int) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: serverBinary ?? "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["serve", "--port", "0", "--data-dir", dataDir, "--bcrypt-cost", "4", "--guests", "--log-level", "warning"]
            + serverArgs.split(separator: " ").map(String.init)
        // Every client comes from 127.0.0.1 and logs in at once: lift the per-address and
        // password-check limits (through the environment, which an older build ignores).
        var environment = ProcessInfo.processInfo.environment
        environment["PARLEY_MAX_CONNECTIONS"] = "0"
        environment["PARLEY_MAX_CONNECTIONS_PER_ADDRESS"] = "0"
        environment["PARLEY_MAX_PASSWORD_CHECKS"] = "1000000"
        environment["PARLEY_HTTP_PORT"] = "0"
        process.environment = environment
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        var text = ""
        let handle = out.fileHandleForReading
        while !text.contains("\n") || (http && !text.contains("/\n")) {
            let data = handle.availableData
            if data.isEmpty { throw ValidationError("the server exited before listening") }
            text += String(decoding: data, as: UTF8.self)
        }
        if http {
            guard let range = text.range(of: #"http://[^ ]+:\d+/"#, options: .regularExpression),
                  let port = Int(text[range].dropLast().split(separator: ":").last ?? "")
            else { throw ValidationError("could not read the server's HTTP port from: \(text)") }
            return (process, port)
        }
        guard let range = text.range(of: #"listening on [^ ]+:(\d+)"#, options: .regularExpression),
            let port = Int(text[range].split(separator: ":").last ?? "")
        else { throw ValidationError("could not read the server's port from: \(text)") }
        return (process, port)
    }
}

/// What one bench client received: a count and a latency per chat message, parsed from the raw
/// frame without decoding JSON. Thread safety: a `Locked` (pthread mutex); written from the client's event loop.
final class ReceiverStats: Sendable {
    private struct State {
        var count = 0
        var latencies: [UInt64] = []
        var last: UInt64 = 0
        var toSend = 0
        var send: (@Sendable () -> Void)?
    }
    private let state = Locked(State())

    /// Counts `payload` if it is a bench message; returns whether it was one. An acknowledgement
    /// (the sender's own copy, which carries the request `id`) lets a closed-loop sender send again.
    func receive(_ payload: ByteBuffer, start: UInt64) -> Bool {
        guard let sentAt = Self.sendTime(in: payload) else { return false }
        let now = DispatchTime.now().uptimeNanoseconds - start
        let next: (@Sendable () -> Void)? = state.withLock { s in
            s.count += 1
            s.latencies.append(now &- sentAt)
            s.last = max(s.last, now)
            guard s.send != nil, s.toSend > 0, payload.contains(Self.idKey) else { return nil }
            s.toSend -= 1
            return s.send
        }
        next?()
        return true
    }

    private static let idKey = Array(#""id":"#.utf8)

    /// Makes this client a closed-loop sender of `total` messages.
    func startSending(total: Int, send: @escaping @Sendable () -> Void) {
        state.withLock { s in
            s.toSend = total
            s.send = send
        }
    }

    /// Sends one message now, if any are left.
    func sendNext() {
        let send: (@Sendable () -> Void)? = state.withLock { s in
            guard s.toSend > 0 else { return nil }
            s.toSend -= 1
            return s.send
        }
        send?()
    }

    /// The send time in a bench message's text (`"t=<ns>;…`). The text is the last field the
    /// server writes, so the scan runs backwards from the end over the padding only.
    static func sendTime(in payload: ByteBuffer) -> UInt64? {
        payload.withUnsafeReadableBytes { raw -> UInt64? in
            let bytes = raw.bindMemory(to: UInt8.self)
            var i = bytes.count - 3
            while i >= 0 {
                if bytes[i] == 0x22 && bytes[i + 1] == 0x74 && bytes[i + 2] == 0x3D {  // "t=
                    var j = i + 3
                    var value: UInt64 = 0
                    while j < bytes.count, bytes[j] >= 0x30, bytes[j] <= 0x39 {
                        value = value * 10 + UInt64(bytes[j] - 0x30)
                        j += 1
                    }
                    return j > i + 3 ? value : nil
                }
                i -= 1
            }
            return nil
        }
    }

    var count: Int { state.withLock { $0.count } }
    var latencies: [UInt64] { state.withLock { $0.latencies } }
    var lastReceipt: UInt64 { state.withLock { $0.last } }
    func reset() { state.withLock { $0 = State() } }

}

/// The resident memory of a process, from /proc.
func residentBytes(_ pid: Int) -> UInt64? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let kb = line.split(separator: " ").dropFirst().first.flatMap { UInt64($0) }
        return kb.map { $0 * 1024 }
    }
    return nil
}

/// User plus system CPU time a process has used, in seconds, from /proc.
func cpuSeconds(_ pid: Int) -> Double? { cpuSeconds(path: "/proc/\(pid)/stat") }

/// User plus system CPU time from a /proc `stat` file (a process's or one thread's).
func cpuSeconds(path: String) -> Double? {
    guard let stat = try? String(contentsOfFile: path, encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return nil }
    // Fields after the command name: state is field 3; utime and stime are fields 14 and 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

#if os(Linux)
private let fileLimitResource = Int32(RLIMIT_NOFILE.rawValue)
#else
private let fileLimitResource = RLIMIT_NOFILE
#endif

/// The soft limit on open files (0 when unknown).
func openFileLimit() -> Int {
    var limit = rlimit()
    guard getrlimit(fileLimitResource, &limit) == 0, limit.rlim_cur != rlim_t.max else { return 0 }
    return Int(clamping: limit.rlim_cur)
}

/// Lifts the open-file limit to its hard maximum (thousands of sockets).
func raiseFileLimit() {
    var limit = rlimit()
    let resource = fileLimitResource
    if getrlimit(resource, &limit) == 0 {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(resource, &limit)
    }
}

extension ByteBuffer {
    /// Whether the readable bytes contain `needle` (a plain scan over raw memory).
    func contains(_ needle: [UInt8]) -> Bool {
        withUnsafeReadableBytes { raw in
            let n = raw.count, m = needle.count
            guard m > 0, n >= m else { return m == 0 }
            let first = needle[0]
            var i = 0
            outer: while i <= n - m {
                if raw[i] == first {
                    for k in 1..<m where raw[i + k] != needle[k] {
                        i += 1
                        continue outer
                    }
                    return true
                }
                i += 1
            }
            return false
        }
    }
}
