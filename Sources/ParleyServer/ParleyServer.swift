import Foundation
import Logging
import NIOCore
import NIOPosix
import ParleyCore
import ParleyStore
import ParleyWire
import ServiceLifecycle
import Synchronization

/// The Parley server: storage, the hub and every listener, as one ServiceLifecycle `Service`.
///
/// This is the one way to build a server: `parley serve` and every end-to-end test call
/// ``init(configuration:storage:logger:)`` with a ``ServerConfiguration`` (resolved from flags,
/// environment and file by ``ServerConfiguration/resolve(arguments:environment:)``), then
/// ``start()``. Every listener runs on one shared event-loop group; tests bind port 0 and read
/// ``port`` (or ``port(of:)``). Shutdown tells every client, closes the connections, writes what
/// is pending to the database, and stops the threads.
/// Thread safety: `Sendable`; ``start()``, ``run()`` and ``shutdown()`` may be called from any task.
public final class ParleyServer: Service, Sendable {
    public let configuration: ServerConfiguration
    /// Where everything is stored (SQLite unless another store was given).
    public let storage: any Storage
    let commits: CommitQueue
    let hub: Hub
    let group: MultiThreadedEventLoopGroup
    let threadPool: NIOThreadPool
    let passwords: PasswordChecks
    let logger: Logger
    let listeners: [any Listener]
    /// What the server counts (``ServerMetrics``), in a registry of its own.
    let metrics: ServerMetrics
    /// `/metrics` and `/health`, when ``ServerConfiguration/metricsPort`` is set.
    let metricsListener: MetricsListener?
    let bound = Locked<[String: any Channel]>([:])
    let connections = Locked(Connections())
    /// The TLS certificate of the native and HTTP listeners; nil without TLS.
    let tls: TLSContextBox?

    /// Open connections, for shutdown and the connection limits.
    struct Connections {
        var open: [ObjectIdentifier: (channel: any Channel, listener: Int)] = [:]
        var perAddress: [String: Int] = [:]
    }
    private let stopped = Locked(false)
    /// When the server was built (for `stats`).
    let startedAt = Date()
    /// Address ranges whose connections are refused (`ban --address`), in force or ended.
    let addressBans = Locked<[(range: AddressRange, ban: Ban)]>([])
    /// What a `shutdown` command (or the console's `exit`) does: by default, ``shutdown()``;
    /// `parley serve` makes it stop its whole service group, as SIGTERM does.
    private let shutdownRequest = Locked<(@Sendable () -> Void)?>(nil)
    /// The control socket for `parley admin`, once started.
    let control = Locked<ControlSocket?>(nil)

    /// Opens the store (creating and migrating the SQLite file unless `storage` is given) and
    /// prepares the threads and listeners; does not listen yet.
    /// - Parameter storage: a store to use instead of SQLite in `configuration.dataDirectory`
    ///   (tests inject one that fails on demand).
    /// - Throws: when the data directory or database cannot be opened; ``TLSSetupError`` when the
    ///   TLS certificate or key cannot be read, is not PEM, or the key is not the certificate's.
    public init(configuration: ServerConfiguration, storage: (any Storage)? = nil, logger: Logger = Logger(label: "parley")) throws {
        self.configuration = configuration
        self.logger = logger
        let threads = configuration.threads > 0 ? configuration.threads : System.coreCount
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        passwords = PasswordChecks(threads: System.coreCount, limit: configuration.maxPasswordChecks)
        let metrics = ServerMetrics()
        self.metrics = metrics
        metricsListener = configuration.metricsPort.map { MetricsListener(host: configuration.metricsHost, port: $0) }
        do {
            let tls = try TLSContextBox.make(configuration)
            self.tls = tls
            if let tls {
                let certificate = tls.certificate
                logger.info("TLS certificate loaded", metadata: certificate.metadata)
                if !certificate.isValid() {
                    logger.warning("the TLS certificate is not valid now: clients will refuse it", metadata: certificate.metadata)
                }
            }
            var listeners: [any Listener] = [NativeListener(host: configuration.host, port: configuration.port, configuration: configuration, tls: tls)]
            if let plainPort = configuration.plainPort {
                // Plain native protocol for programs on this machine (an admin script, a local
                // bridge): loopback only, whatever --host says.
                listeners.append(NativeListener(name: NativeListener.plainName, host: "127.0.0.1", port: plainPort, configuration: configuration))
            }
            if let httpPort = configuration.httpPort {
                listeners.append(try WebListener(host: configuration.host, port: httpPort, configuration: configuration, tls: tls))
            }
            self.listeners = listeners
            let storage = try storage ?? SQLiteStore(directory: configuration.dataDirectory, durability: configuration.durability, logger: logger)
            self.storage = storage
            commits = CommitQueue(writer: storage, lastMessageID: try storage.lastMessageID(), logger: logger)
            let bans = try storage.bans()
            addressBans.withLock { list in
                for ban in bans { if case .address(let text) = ban.target, let range = AddressRange(text) { list.append((range, ban)) } }
            }
            commits.setObserver { metrics.batchCommitted($0) }
            hub = try Hub(storage: storage, commits: commits, configuration: configuration, loops: Array(group.makeIterator()),
                          threadPool: threadPool, passwords: passwords, encoders: [NativeEncoder(), WebSocketEncoder()], logger: logger,
                          metrics: metrics)
        } catch {
            try? threadPool.syncShutdownGracefully()
            try? passwords.pool.syncShutdownGracefully()
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    /// The port the native listener is bound to, once started.
    public var port: Int? { port(of: "native") }

    /// The port of the listener named `name` (`native`, `native-plain`, `http`, `metrics`), once started.
    public func port(of name: String) -> Int? { bound.withLock { $0[name]?.localAddress?.port } }

    /// Binds every listener.
    /// - Returns: the native listener's port.
    @discardableResult
    public func start() async throws -> Int {
        for (index, listener) in listeners.enumerated() {
            let channel = try await listener.bind(hub: hub, group: group, admit: { [weak self] in self?.admit($0, listener: index) }, logger: logger)
            bound.withLock { $0[listener.name] = channel }
            logger.info("listening", metadata: [
                "address": "\(listener.host):\(channel.localAddress?.port ?? listener.port)", "protocol": "\(listener.name)",
                "tls": "\(listener.speaksTLS ? "on" : "off")",
            ])
        }
        let path = configuration.controlSocketPath
        do {
            let socket = try await ControlSocket.start(path: path, server: self, group: group, logger: logger)
            control.withLock { $0 = socket }
            logger.info("control socket ready", metadata: ["path": "\(path)"])
        } catch let error as ControlSocket.Unavailable where error.description.hasPrefix("another") {
            // Another server's socket, or a file that is not a socket: nothing is taken over.
            throw error
        } catch {
            // The server runs without it; `parley admin` will say there is no server.
            logger.warning("no control socket: parley admin cannot reach this server", metadata: ["reason": "\(error)"])
        }
        try await startMetricsListener()
        startMemoryTrim()
        return port ?? configuration.port
    }

    /// Every 10 s, hands memory freed after bursts (a crowd logging in, a flood of messages) back
    /// to the operating system; glibc's allocator otherwise keeps it for the life of the process.
    private func startMemoryTrim() {
        #if os(Linux)
        // On a background queue: a trim of a large heap can take milliseconds, which an event
        // loop (and the latency of every client on it) should not pay.
        DispatchQueue.global(qos: .background).asyncAfter(deadline: .now() + 10) { [weak self] in
            guard let self, !self.stopped.withLock({ $0 }) else { return }
            _ = parley_malloc_trim(0)
            self.startMemoryTrim()
        }
        #endif
    }

    /// Counts a new connection, or refuses it when it is over the total or per-address limit
    /// (`TOO_MANY_CONNECTIONS`; a refused connection is not counted and closes at once).
    private func admit(_ channel: any Channel, listener: Int) -> ParleyError? {
        let id = ObjectIdentifier(channel)
        let address = channel.remoteAddress?.ipAddress ?? "?"
        let (total, perAddress) = (configuration.maxConnections, configuration.maxConnectionsPerAddress)
        let trusted = configuration.trustedProxies
        if let ban = addressBan(for: address) {
            logger.notice("connection refused: address banned", metadata: ["address": "\(address)", "range": "\(ban.name)"])
            return ban.refusal
        }
        let refusal = connections.withLock { c -> ParleyError? in
            if total > 0, c.open.count >= total {
                return ParleyError(.tooManyConnections, "the server has too many connections (\(total)); try again later")
            }
            // A trusted proxy carries many clients; it is held to the total cap only.
            if perAddress > 0, !trusted.contains(address), c.perAddress[address, default: 0] >= perAddress {
                return ParleyError(.tooManyConnections, "too many connections from your address (\(perAddress))")
            }
            c.open[id] = (channel, listener)
            c.perAddress[address, default: 0] += 1
            return nil
        }
        if let refusal {
            metrics.error(refusal.code)
            logger.notice("connection refused", metadata: ["address": "\(address)", "reason": "\(refusal.message)"])
            return refusal
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.connections.withLock { c in
                c.open.removeValue(forKey: id)
                let left = c.perAddress[address, default: 1] - 1
                c.perAddress[address] = left > 0 ? left : nil
            }
        }
        return nil
    }

    /// The address ban in force on `address`, if any.
    func addressBan(for address: String) -> Ban? {
        let now = Timestamp.now
        return addressBans.withLock { list in
            list.removeAll { !$0.ban.holds(at: now) }
            return list.first { $0.range.contains(address) }?.ban
        }
    }

    /// Puts an address ban in force: new connections from the range are refused, and open ones
    /// (logged in or not) are closed, logged-in ones told why. Returns how many were closed.
    func applyAddressBan(_ range: AddressRange, _ ban: Ban) -> Int {
        addressBans.withLock { list in
            list.removeAll { $0.range == range }
            list.append((range, ban))
        }
        let error = ban.refusal
        let told = hub.closeSessions(where: { range.contains($0) }, error)
        let open = connections.withLock { Array($0.open.values) }.filter { range.contains($0.channel.remoteAddress?.ipAddress ?? "") }
        for (channel, _) in open {
            // Sessions were told and close themselves; a connection not logged in closes now.
            channel.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
        }
        return max(told, open.count)
    }

    /// Open connections per listener (`native`, `http`, ...).
    func connectionsByTransport() -> [String: Int] {
        let listeners = self.listeners
        return connections.withLock { c in
            var counts: [String: Int] = [:]
            for (_, index) in c.open.values { counts[listeners[index].name, default: 0] += 1 }
            return counts
        }
    }

    /// Sets what a `shutdown` command does (`parley serve`: stop the service group).
    public func onShutdownRequest(_ body: @escaping @Sendable () -> Void) {
        shutdownRequest.withLock { $0 = body }
    }

    /// Asks for a graceful shutdown, as SIGTERM does.
    public func requestShutdown() {
        if let body = shutdownRequest.withLock({ $0 }) {
            body()
        } else {
            Task { await self.shutdown() }
        }
    }

    /// Runs until a graceful shutdown is requested (SIGINT/SIGTERM through the ServiceGroup), then shuts down.
    public func run() async throws {
        if port == nil { try await start() }
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Tells clients, closes connections, writes pending work to disk and stops the threads. Idempotent.
    ///
    /// In this order, so that no client is left guessing: new requests are refused with
    /// `SERVER_SHUTTING_DOWN` from the first step on; every request already read is carried out
    /// (password checks, reads and group changes finish, every send already accepted is stored);
    /// the answers, acknowledgements and deliveries that produces reach the connections; only then
    /// does each client get `shutdown` and its connection close. What a client sent and got no
    /// answer to was not carried out.
    public func shutdown() async {
        guard stopped.withLock({ was in defer { was = true }; return !was }) else { return }
        logger.info("shutting down")
        hub.state.withLock { $0.shuttingDown = true }
        for channel in bound.withLock({ Array($0.values) }) {
            try? await channel.close()
        }
        if let control = control.withLock({ $0 }) { await control.stop() }
        // Sends that passed the check before the flag was set have been queued for storage.
        await eachLoop()
        // Password checks, reads and replays under way finish; their answers (and any group
        // changes they lead to) are handed to the loops and the commit queue.
        await passwords.shutdown()
        try? await threadPool.shutdownGracefully()
        await eachLoop()
        // Everything accepted is stored; acknowledgements and deliveries are written.
        let commits = self.commits
        await Self.offCooperativeThreads { commits.flush() }
        await eachLoop()
        let open = connections.withLock { Array($0.open.values) }
        let listeners = self.listeners
        for (channel, index) in open {
            channel.eventLoop.execute { listeners[index].farewell(channel, message: "the server is shutting down") }
        }
        for (channel, _) in open {
            try? await channel.closeFuture.get()
        }
        // Each closed session queued its read position; write everything that is pending.
        await Self.offCooperativeThreads { commits.close() }
        for listener in listeners { await listener.stop() }
        await metricsListener?.stop()
        try? await group.shutdownGracefully()
        logger.info("stopped")
    }

    /// Returns once every event loop has run what was handed to it before this call.
    private func eachLoop() async {
        for loop in group.makeIterator() {
            try? await loop.submit {}.get()
        }
    }

    /// Runs blocking `body` (waiting for the commit queue) on a dispatch thread, not on one of
    /// Swift concurrency's cooperative threads, and returns when it is done.
    private static func offCooperativeThreads(_ body: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                body()
                done.resume()
            }
        }
    }

    /// The certificate new TLS connections get; nil when the server has no TLS.
    public var tlsCertificate: TLSCertificateSummary? { tls?.certificate }

    /// Reads the TLS certificate and key files again (after a renewal) and uses them for every
    /// connection accepted from now on; open connections keep the certificate they started with
    /// and are not dropped. `parley serve` calls it on SIGHUP and for `parley admin reload`.
    ///
    /// The files are checked before anything changes: when one is missing or unreadable, is not
    /// PEM, or the key does not belong to the certificate, this throws and the certificate in use
    /// stays. Reads two small files (blocking): call it off the event loops.
    /// - Returns: what the new certificate is (subject, names, serial, expiry).
    /// - Throws: ``TLSSetupError`` with a message for the operator, naming the file; also when the
    ///   server runs without TLS.
    /// Thread safety: may be called from any thread, also while connections are being accepted.
    @discardableResult
    public func reloadTLS() throws -> TLSCertificateSummary {
        guard let tls else {
            throw TLSSetupError("TLS is off: there is no certificate to reload (start the server with --tls-cert and --tls-key)")
        }
        do {
            let certificate = try tls.reload()
            logger.notice("TLS certificate reloaded: new connections get it", metadata: certificate.metadata)
            if !certificate.isValid() {
                logger.warning("the reloaded TLS certificate is not valid now: clients will refuse it", metadata: certificate.metadata)
            }
            return certificate
        } catch {
            logger.error("TLS certificate not reloaded; the one in use stays", metadata: ["error": "\(error)"])
            throw error
        }
    }

    /// Writes waiting for the database (for operators and tests).
    public var commitBacklog: Int { commits.backlog }

    /// Threads that check passwords (one per core).
    public var passwordCheckThreads: Int { passwords.threads }

    /// Password checks run to the end, and dropped because their connection had gone.
    public var passwordChecks: (completed: Int, dropped: Int) {
        (passwords.completed.load(ordering: .relaxed), passwords.dropped.load(ordering: .relaxed))
    }

    /// Number of open connections (logged in or not).
    public var connectionCount: Int { connections.withLock { $0.open.count } }
}

/// Limits glibc's allocator to two arenas. By default every thread that meets contention gets an
/// arena of its own, and buffers allocated on one thread (frames encoded on the commit thread)
/// and freed on another (an event loop) leave each arena fragmented: measured with 10,000 idle
/// connections, 11.5 KB per connection with the default, 5.3 KB with two arenas, and no
/// measurable change in throughput. Call before the server's threads start.
public func limitMallocArenas() {
    #if os(Linux)
    _ = parley_mallopt(-8 /* M_ARENA_MAX */, 2)
    #endif
}

#if os(Linux)
@_silgen_name("mallopt")
private func parley_mallopt(_ parameter: Int32, _ value: Int32) -> Int32

/// glibc's `malloc_trim`, which the Glibc module does not export.
@_silgen_name("malloc_trim")
private func parley_malloc_trim(_ pad: Int) -> Int32
#endif
