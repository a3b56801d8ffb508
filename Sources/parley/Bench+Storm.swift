import ArgumentParser
import Dispatch
import Foundation
import HummingbirdBcrypt
import NIOCore
import NIOPosix
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyStore
import Synchronization

extension Bench {
    /// The login storm: `users` registered accounts in `users / 10` groups (10 members each),
    /// written straight into a fresh database, then every user logs in at once against a server
    /// started on it: with the login token each one was given (what clients do when they
    /// reconnect after a restart), or with `--storm-passwords` with the password. Prints the time until the last replay ended, the server's CPU (also without
    /// the password-hashing threads), and the frames each client received until things settled.
    func runStorm(users: Int, group: MultiThreadedEventLoopGroup) async throws {
        guard users >= 10 else { throw ValidationError("--storm needs at least 10 users") }
        let dir = NSTemporaryDirectory() + "parley-storm-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let password = "storm-password"
        do {
            let store = try SQLiteStore(directory: dir)
            let hash = Bcrypt.hash(password, cost: 4)
            for i in 0..<users {
                _ = try store.createAccount(name: "u\(i)", passwordHash: hash, now: .now)
                try store.saveToken(hash: LoginToken.hash(Self.stormToken(i)), user: "u\(i)", now: .now, keep: 1)
            }
            let groupCount = users / 10
            var mutations: [WriteItem] = []
            for g in 0..<groupCount {
                let members = stride(from: g, to: users, by: groupCount).map { "u\($0)" }
                mutations.append(.groups([.create(Group(id: Int64(g + 1), name: "g\(g)", owner: members[0], inviteOnly: false, members: members))]))
            }
            _ = try store.write(mutations, now: .now)
            store.close()
        }
        let (process, port) = try startServer(dataDir: dir)
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        let pid = Int(process.processIdentifier)
        let frames = (0..<users).map { _ in FrameCounter() }
        let cpuBefore = cpuSeconds(pid) ?? 0
        let hashingBefore = threadCPUSeconds(pid, prefix: "TP-#")
        let start = DispatchTime.now().uptimeNanoseconds
        let lastLogin = Atomic<UInt64>(0)
        // Every user at once, with at most 1,000 connections being set up at a time.
        var clients: [ParleyClient] = []
        let host = self.host
        let usePasswords = stormPasswords
        let login: @Sendable (Int) async throws -> ParleyClient = { i in
            let counter = frames[i]
            let client = try await ParleyClient.connect(host: host, port: port, timeout: 60, group: group) { _ in
                counter.value.add(1, ordering: .relaxed)
                return false
            }
            if usePasswords {
                try await client.login("u\(i)", password: password, timeout: 120)
            } else {
                try await client.login("u\(i)", token: Self.stormToken(i), timeout: 120)
            }
            _ = try await client.next(timeout: 120) { if case .replayEnd = $0 { true } else { false } }
            lastLogin.max(DispatchTime.now().uptimeNanoseconds - start, ordering: .relaxed)
            client.clearEvents()
            return client
        }
        try await withThrowingTaskGroup(of: ParleyClient.self) { tasks in
            var next = 0
            while next < min(users, 1000) {
                let i = next
                tasks.addTask { try await login(i) }
                next += 1
            }
            for try await client in tasks {
                clients.append(client)
                if next < users {
                    let i = next
                    tasks.addTask { try await login(i) }
                    next += 1
                }
            }
        }
        // Settled: no frame for 1.5 s (the online count goes out at most once a second).
        var total = frames.reduce(0) { $0 + $1.value.load(ordering: .relaxed) }
        while true {
            try await Task.sleep(for: .milliseconds(1500))
            let now = frames.reduce(0) { $0 + $1.value.load(ordering: .relaxed) }
            if now == total { break }
            total = now
        }
        let cpu = (cpuSeconds(pid) ?? 0) - cpuBefore
        let pool = threadCPUSeconds(pid, prefix: "TP-#") - hashingBefore
        // What the password checks alone cost: the same bcrypt verification, timed here.
        var bcrypt = 0.0
        if usePasswords {
            let probe = Bcrypt.hash(password, cost: 4)
            let probeStart = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<200 { _ = Bcrypt.verify(password, hash: probe) }
            bcrypt = Double(DispatchTime.now().uptimeNanoseconds - probeStart) / 1e9 / 200 * Double(users)
        }
        let counts = frames.map { $0.value.load(ordering: .relaxed) }
        let seconds = Double(lastLogin.load(ordering: .relaxed)) / 1e9
        var line = "storm users=\(users) groups=\(users / 10) login=\(usePasswords ? "password" : "token") seconds=\(String(format: "%.2f", seconds))"
        line += String(format: " server_cpu_s=%.2f thread_pool_cpu_s=%.2f bcrypt_cost4_estimate_s=%.2f server_cpu_s_less_bcrypt=%.2f",
                       cpu, pool, bcrypt, cpu - bcrypt)
        line += " frames_per_client_avg=\(String(format: "%.1f", Double(counts.reduce(0, +)) / Double(users))) frames_per_client_max=\(counts.max() ?? 0)"
        line += " server_rss_mib=\(String(format: "%.1f", Double(residentBytes(pid) ?? 0) / 1_048_576))"
        Console.line(line)
        for client in clients { try? await client.channel.close() }
    }
}

extension Bench {
    /// The login token of storm user `i` (the bench writes its hash into the database).
    static func stormToken(_ i: Int) -> String { "storm-token-\(i)-0123456789abcdefghijklmnopqrstuvwxyz" }
}

/// Frames one storm client received. Thread safety: an atomic.
final class FrameCounter: Sendable {
    let value = Atomic<Int>(0)
}

/// CPU seconds used by the threads of `pid` whose name starts with `prefix`, from /proc.
func threadCPUSeconds(_ pid: Int, prefix: String) -> Double {
    guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return 0 }
    var total = 0.0
    for task in tasks {
        guard let name = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/comm", encoding: .utf8), name.hasPrefix(prefix) else { continue }
        total += cpuSeconds(path: "/proc/\(pid)/task/\(task)/stat") ?? 0
    }
    return total
}
