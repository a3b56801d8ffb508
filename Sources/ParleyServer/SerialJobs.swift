import Collections
import ParleyCore

/// Runs jobs one at a time, in the order they were queued, where a job may finish later (after a
/// database write) by calling the closure it is given. Jobs that finish at once are run in a
/// loop, not by recursion, so a long queue cannot exhaust the stack.
/// Thread safety: `Sendable`; the queue is behind a lock, and a job runs on whichever thread
/// queued it or finished the one before it.
final class SerialJobs: Sendable {
    typealias Job = @Sendable (_ done: @escaping @Sendable () -> Void) -> Void

    private struct State {
        var waiting = Deque<Job>()
        /// A job has started and not yet called its `done`.
        var running = false
        /// Some thread is inside ``drive()``.
        var driving = false
    }

    private let state = Locked(State())

    /// Queues `job`; it starts once every job queued before it has finished.
    func run(_ job: @escaping Job) {
        let drive = state.withLock { s -> Bool in
            s.waiting.append(job)
            guard !s.driving, !s.running else { return false }
            s.driving = true
            return true
        }
        if drive { self.drive() }
    }

    private func drive() {
        while let job = state.withLock({ s -> Job? in
            guard !s.running, let next = s.waiting.popFirst() else {
                s.driving = false
                return nil
            }
            s.running = true
            return next
        }) {
            job { self.finished() }
        }
    }

    private func finished() {
        let drive = state.withLock { s -> Bool in
            s.running = false
            // The driving loop (if one is running) picks up the next job itself.
            guard !s.driving else { return false }
            s.driving = true
            return true
        }
        if drive { self.drive() }
    }
}
