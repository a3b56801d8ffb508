import Foundation
import ParleyClient

/// A plain POSIX TCP socket to a loopback port, for tests that must behave as no well-made client
/// would: send without ever reading, hold connections open by the hundred.
/// Thread safety: not thread-safe; one task uses it.
final class RawSocket {
    let fd: Int32

    /// Connects from 127.0.0.1 to 127.0.0.1:`port`.
    /// - Parameter receiveBuffer: SO_RCVBUF, set before connecting (a small one makes a client
    ///   that never reads fill up at once).
    init(port: Int, receiveBuffer: Int? = nil) throws {
        fd = try Self.connected(port: port, receiveBuffer: receiveBuffer)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// A blocking TCP connection to 127.0.0.1:`port` (completed by the kernel, accepted or not).
    static func connected(port: Int, receiveBuffer: Int? = nil) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ParleyClient.ClientError.closed }
        if var size = receiveBuffer.map(Int32.init) {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            // A small send buffer too: what the kernel holds for a server that stopped reading
            // fills quickly.
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            close(fd)
            throw ParleyClient.ClientError.closed
        }
        return fd
    }

    deinit { close(fd) }

    /// Writes all of `bytes` (blocking).
    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw ParleyClient.ClientError.closed }
            offset += n
        }
    }

    func write(_ text: String) throws { try write(Array(text.utf8)) }

    /// Reads until `marker` has been received (or the connection closes, or 10 s pass).
    /// - Returns: everything read.
    @discardableResult
    func read(until marker: String) throws -> String {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !String(decoding: received, as: UTF8.self).contains(marker) {
            let n = recv(fd, &chunk, chunk.count, 0)
            guard n > 0 else { throw ParleyClient.ClientError.timedOut(marker) }
            received += chunk[..<n]
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// Whether the server has closed the connection, waiting up to `timeout` seconds (what
    /// arrives meanwhile is read and dropped).
    func closedByServer(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            let n = recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if n == 0 { return true }
            if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK { return true }
        }
        return false
    }

    /// Sends `pattern` over and over on every socket without ever reading, until none of them has
    /// taken a byte for `quiet` seconds (the server stopped reading them, and the kernel's buffers
    /// are full), each has sent `perSocket` bytes, or `limit` seconds have passed. Sockets the server closes are left alone.
    /// - Parameter sample: called about every 50 ms (to watch the server meanwhile).
    /// - Returns: bytes sent, and how many sockets the server closed.
    static func flood(_ sockets: [RawSocket], pattern: [UInt8], quiet: Double = 1, limit: Double = 60, perSocket: Int = 2 << 20,
                      sample: () -> Void = {}) -> (sent: Int, closed: Int) {
        for socket in sockets { _ = fcntl(socket.fd, F_SETFL, fcntl(socket.fd, F_GETFL) | O_NONBLOCK) }
        defer { for socket in sockets { _ = fcntl(socket.fd, F_SETFL, fcntl(socket.fd, F_GETFL) & ~O_NONBLOCK) } }
        var offsets = [Int](repeating: 0, count: sockets.count)
        var open = [Bool](repeating: true, count: sockets.count)
        var each = [Int](repeating: 0, count: sockets.count)
        var sent = 0
        let start = Date()
        var lastProgress = Date()
        var lastSample = Date.distantPast
        let doubled = pattern + pattern
        while Date().timeIntervalSince(start) < limit, Date().timeIntervalSince(lastProgress) < quiet {
            var progress = false
            for (i, socket) in sockets.enumerated() where open[i] && each[i] < perSocket {
                // From the offset reached, a whole pattern's length (the pattern repeats).
                let n = doubled[offsets[i]..<(offsets[i] + pattern.count)].withUnsafeBytes {
                    send(socket.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                if n > 0 {
                    sent += n
                    each[i] += n
                    offsets[i] = (offsets[i] + n) % pattern.count
                    progress = true
                } else if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK {
                    open[i] = false
                }
            }
            if progress { lastProgress = Date() } else { usleep(2_000) }
            if Date().timeIntervalSince(lastSample) > 0.05 {
                sample()
                lastSample = Date()
            }
        }
        return (sent, open.filter { !$0 }.count)
    }
}

/// What /proc says of a process's memory.
enum ProcessMemory {
    /// Resident memory now (`VmRSS`), in bytes.
    static func resident(_ pid: Int32) -> Int { field("VmRSS", pid) }
    /// The most resident memory since start or since ``resetPeak(_:)`` (`VmHWM`), in bytes.
    static func peak(_ pid: Int32) -> Int { field("VmHWM", pid) }

    /// Resets `VmHWM` to the current resident size (Linux 4.0 and later).
    static func resetPeak(_ pid: Int32) {
        try? "5".write(toFile: "/proc/\(pid)/clear_refs", atomically: false, encoding: .utf8)
    }

    private static func field(_ name: String, _ pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }),
              let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kilobytes * 1024
    }
}

/// Runs blocking `body` on a thread of its own (not one of Swift concurrency's few cooperative
/// threads, which blocking calls would starve) and returns its result.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (done: CheckedContinuation<T, any Error>) in
        let thread = Thread {
            do { done.resume(returning: try body()) } catch { done.resume(throwing: error) }
        }
        thread.start()
    }
}
