import NIOCore
import NIOPosix
import ParleyCore
import Synchronization

/// Password hashing and checking (bcrypt, for `register` and password `login`) on a pool of its
/// own, bounded: at most `limit` checks queued or running at once; past that a request is
/// answered `SERVER_BUSY` at once instead of waiting behind everyone else. A check whose
/// connection has gone by the time its turn comes is dropped, not run.
///
/// Reads (history, replay, login tokens) use the hub's other pool, so a crowd of password checks
/// cannot hold them up.
/// Thread safety: `Sendable`; the count is behind a lock, the pool is NIO's.
final class PasswordChecks: Sendable {
    let pool: NIOThreadPool
    let limit: Int
    let threads: Int
    /// Checks queued or running.
    private let waiting = Locked(0)
    /// Checks queued or running now (for metrics).
    var queued: Int { waiting.withLock { $0 } }
    /// Checks run to the end (for operators and tests).
    let completed = Atomic<Int>(0)
    /// Checks dropped because their connection had gone.
    let dropped = Atomic<Int>(0)

    /// Thrown to the future of a check dropped because its connection had gone.
    struct Gone: Error {}

    init(threads: Int, limit: Int) {
        self.threads = max(1, threads)
        pool = NIOThreadPool(numberOfThreads: self.threads)
        self.limit = max(1, limit)
        pool.start()
    }

    /// Runs `body` on the pool unless `gone()` says, when its turn comes, that nobody waits for it.
    /// The future completes on `loop`; it fails with `SERVER_BUSY` when `limit` checks are
    /// already waiting, and with `SERVER_SHUTTING_DOWN` once the pool has stopped.
    func run<T: Sendable>(on loop: any EventLoop, unless gone: @escaping @Sendable () -> Bool,
                          _ body: @escaping @Sendable () throws -> T) -> EventLoopFuture<T> {
        let limit = self.limit
        let admitted = waiting.withLock { n -> Bool in
            guard n < limit else { return false }
            n += 1
            return true
        }
        guard admitted else {
            return loop.makeFailedFuture(ParleyError(.serverBusy, "the server is busy checking passwords; try again in a few seconds"))
        }
        return pool.runIfActive(eventLoop: loop) { [self] () throws -> T in
            defer { waiting.withLock { $0 -= 1 } }
            if gone() {
                dropped.add(1, ordering: .relaxed)
                throw Gone()
            }
            defer { completed.add(1, ordering: .relaxed) }
            return try body()
        }.flatMapErrorThrowing { error in throw ParleyError.stopped(error) }
    }

    func shutdown() async {
        try? await pool.shutdownGracefully()
    }
}

extension ParleyError {
    /// `SERVER_SHUTTING_DOWN` for work refused by a thread pool that has stopped; `error` otherwise.
    static func stopped(_ error: any Error) -> any Error {
        if error is NIOThreadPoolError.ThreadPoolInactive { return ParleyError(.shuttingDown, "the server is shutting down") }
        return error
    }
}
