import Metrics
import ParleyCore
import ParleyStore

/// What one server counts, as swift-metrics objects made once from the server's own factory
/// (``PrometheusBackend``) and kept: the hot paths only increment atomics, with no lookups, no
/// label strings and no locks. Messages and deliveries are counted once per commit batch on the
/// commit thread; gauges (connections, sessions, users online, queues) are read from the
/// server's state when `/metrics` is scraped, so keeping them costs nothing in between.
///
/// Every name is declared once in ``Name`` with its help text in ``help``: the exposition, the
/// docs (docs/OPERATING.md) and the Grafana dashboard's test all go by them.
/// Thread safety: `Sendable`; the metric objects are atomics, the caches of labelled metrics are
/// behind locks.
final class ServerMetrics: Sendable {
    /// Metric names (prefix `parley_`; swift-prometheus mangles digits other than 0 and 9 in
    /// names, so there are none).
    enum Name {
        static let connections = "parley_connections"
        static let sessions = "parley_sessions"
        static let usersOnline = "parley_users_online"
        static let messages = "parley_messages_total"
        static let deliveries = "parley_deliveries_total"
        static let slowConsumers = "parley_slow_consumers_total"
        static let logins = "parley_logins_total"
        static let passwordChecksWaiting = "parley_password_checks_waiting"
        static let commitBatchSize = "parley_commit_batch_size"
        static let commitDuration = "parley_commit_duration_seconds"
        static let commitBacklog = "parley_commit_backlog"
        static let storeAccepting = "parley_store_accepting_writes"
        static let replayPages = "parley_replay_pages_total"
        static let errors = "parley_errors_total"
        static let uptime = "parley_uptime_seconds"
    }

    /// `# HELP` text of every family.
    static let help: [String: String] = [
        Name.connections: "Open connections by listener (transport): native, http (WebSocket and plain HTTP), ...",
        Name.sessions: "Logged-in sessions by transport (native, websocket).",
        Name.usersOnline: "Users with at least one session.",
        Name.messages: "Chat messages stored (accepted), by kind: general, group, private.",
        Name.deliveries: "Copies of stored chat messages handed to sessions (the sender's acknowledgement included).",
        Name.slowConsumers: "Connections closed because their outbox went over its bound (SLOW_CONSUMER).",
        Name.logins: "Login attempts by method (password, token, guest) and outcome.",
        Name.passwordChecksWaiting: "Password checks (bcrypt) queued or running.",
        Name.commitBatchSize: "Operations (messages, group changes, read positions) written per database transaction.",
        Name.commitDuration: "Time to write one batch to the database, in seconds.",
        Name.commitBacklog: "Operations waiting for the database.",
        Name.storeAccepting: "1 while the store accepts writes, 0 after a write it refused (until one succeeds again).",
        Name.replayPages: "Pages of missed messages read and written to sessions at login.",
        Name.errors: "Errors sent to clients (answers and closing errors), by code.",
        Name.uptime: "Seconds since the server started.",
    ]

    /// How a login was attempted.
    enum LoginMethod: Int, CaseIterable {
        case password, token, guest
        var label: String {
            switch self {
            case .password: "password"
            case .token: "token"
            case .guest: "guest"
            }
        }
    }

    /// How a login ended.
    enum LoginOutcome: Int, CaseIterable {
        case success, invalidCredentials, rateLimited, banned, serverBusy, shuttingDown, refused, failed

        var label: String {
            switch self {
            case .success: "success"
            case .invalidCredentials: "invalid_credentials"
            case .rateLimited: "rate_limited"
            case .banned: "banned"
            case .serverBusy: "server_busy"
            case .shuttingDown: "shutting_down"
            case .refused: "refused"
            case .failed: "error"
            }
        }

        /// The outcome of a login that failed with `error`: its code where it names one, `refused`
        /// for a request the server does not allow (a bad name, guests off), `error` otherwise.
        init(_ error: ParleyError) {
            switch error.code {
            case .invalidCredentials: self = .invalidCredentials
            case .rateLimited: self = .rateLimited
            case .banned: self = .banned
            case .serverBusy: self = .serverBusy
            case .shuttingDown: self = .shuttingDown
            case .invalidUsername, .guestsDisabled, .badRequest, .alreadyAuthenticated, .notAuthenticated: self = .refused
            default: self = .failed
            }
        }
    }

    let backend: PrometheusBackend
    private let factory: any MetricsFactory
    private let started = ContinuousClock.now

    private let messagesGeneral: Counter
    private let messagesGroup: Counter
    private let messagesPrivate: Counter
    private let deliveries: Counter
    private let slowConsumers: Counter
    let replayPages: Counter
    /// Indexed by ``LoginMethod`` then ``LoginOutcome``.
    private let logins: [[Counter]]
    private let commitBatchSize: Recorder
    private let commitDuration: Metrics.Timer
    private let usersOnline: Meter
    private let passwordChecksWaiting: Meter
    private let commitBacklog: Meter
    private let storeAccepting: Meter
    private let uptime: Meter
    /// Errors by code, made on first use (the codes are the server's own, a bounded set).
    private let errors = Locked<[String: Counter]>([:])
    /// Gauges with a label, by name and label value, made on first use at a scrape.
    private let labelled = Locked<[String: Meter]>([:])

    init(backend: PrometheusBackend = PrometheusBackend()) {
        self.backend = backend
        let factory = backend.metricsFactory
        self.factory = factory
        messagesGeneral = Counter(label: Name.messages, dimensions: [("kind", "general")], factory: factory)
        messagesGroup = Counter(label: Name.messages, dimensions: [("kind", "group")], factory: factory)
        messagesPrivate = Counter(label: Name.messages, dimensions: [("kind", "private")], factory: factory)
        deliveries = Counter(label: Name.deliveries, factory: factory)
        slowConsumers = Counter(label: Name.slowConsumers, factory: factory)
        replayPages = Counter(label: Name.replayPages, factory: factory)
        logins = LoginMethod.allCases.map { method in
            LoginOutcome.allCases.map { outcome in
                Counter(label: Name.logins, dimensions: [("method", method.label), ("outcome", outcome.label)], factory: factory)
            }
        }
        commitBatchSize = Recorder(label: Name.commitBatchSize, aggregate: true, factory: factory)
        commitDuration = Metrics.Timer(label: Name.commitDuration, factory: factory)
        usersOnline = Meter(label: Name.usersOnline, factory: factory)
        passwordChecksWaiting = Meter(label: Name.passwordChecksWaiting, factory: factory)
        commitBacklog = Meter(label: Name.commitBacklog, factory: factory)
        storeAccepting = Meter(label: Name.storeAccepting, factory: factory)
        uptime = Meter(label: Name.uptime, factory: factory)
        storeAccepting.set(1)
    }

    /// The factory this server's metrics are made from.
    var metricsFactory: any MetricsFactory { factory }

    // MARK: Counting (hot paths)

    /// A commit batch was written: its size and how long it took. On the commit thread.
    func batchCommitted(_ report: CommitQueue.BatchReport) {
        commitBatchSize.record(report.operations)
        let (seconds, attoseconds) = report.duration.components
        commitDuration.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// The messages of a stored batch by kind, and the copies handed to their recipients. On the
    /// commit thread, once per batch.
    func messagesStored(_ batch: [Hub.Committed], recipients: [[[Session]]]) {
        var general = 0, group = 0, direct = 0, delivered = 0
        for item in batch {
            switch item.message.room {
            case .general: general += 1
            case .group: group += 1
            case .direct: direct += 1
            }
        }
        for parts in recipients {
            for sessions in parts { delivered += sessions.count }
        }
        if general > 0 { messagesGeneral.increment(by: general) }
        if group > 0 { messagesGroup.increment(by: group) }
        if direct > 0 { messagesPrivate.increment(by: direct) }
        if delivered > 0 { deliveries.increment(by: delivered) }
    }

    /// A login ended.
    func login(_ method: LoginMethod, _ outcome: LoginOutcome) {
        logins[method.rawValue][outcome.rawValue].increment()
    }

    /// An error was sent to a client (an answer, or the reason a connection was closed).
    func error(_ code: ParleyError.Code) {
        let counter = errors.withLock { (known: inout [String: Counter]) -> Counter in
            if let counter = known[code.rawValue] { return counter }
            let counter = Counter(label: Name.errors, dimensions: [("code", code.rawValue)], factory: factory)
            known[code.rawValue] = counter
            return counter
        }
        counter.increment()
    }

    /// A connection closed; `closeError` is the error the server closed it with, if any.
    func connectionClosed(with closeError: ParleyError?) {
        guard let closeError else { return }
        error(closeError.code)
        if closeError.code == .slowConsumer { slowConsumers.increment() }
    }

    // MARK: Scraping

    /// The state read at a scrape.
    struct Snapshot {
        /// Open connections by listener name.
        var connections: [(transport: String, count: Int)]
        /// Sessions by transport name.
        var sessions: [(transport: String, count: Int)]
        var usersOnline: Int
        var passwordChecksWaiting: Int
        var commitBacklog: Int
        var storeAccepting: Bool
    }

    /// Sets the gauges from `snapshot` and renders every metric in Prometheus' text format.
    func exposition(_ snapshot: Snapshot) -> String {
        for (transport, count) in snapshot.connections { labelledMeter(Name.connections, transport: transport).set(count) }
        for (transport, count) in snapshot.sessions { labelledMeter(Name.sessions, transport: transport).set(count) }
        usersOnline.set(snapshot.usersOnline)
        passwordChecksWaiting.set(snapshot.passwordChecksWaiting)
        commitBacklog.set(snapshot.commitBacklog)
        storeAccepting.set(snapshot.storeAccepting ? 1 : 0)
        let elapsed = (ContinuousClock.now - started).components
        uptime.set(Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)
        return backend.exposition(help: Self.help)
    }

    private func labelledMeter(_ name: String, transport: String) -> Meter {
        labelled.withLock { (known: inout [String: Meter]) -> Meter in
            let key = name + "/" + transport
            if let meter = known[key] { return meter }
            let meter = Meter(label: name, dimensions: [("transport", transport)], factory: factory)
            known[key] = meter
            return meter
        }
    }
}
