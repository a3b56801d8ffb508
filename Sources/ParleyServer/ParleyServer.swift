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
    private let bound = Locked<[String: any Channel]>([:])
    private let connections = Locked(Connections())

    /// Open connections, for shutdown and the connection limits.
    struct Connections {
        var open: [ObjectIdentifier: (channel: any Channel, listener: Int)] = [:]
        var perAddress: [String: Int] = [:]
    }
    private let stopped = Locked(false)

    /// Opens the store (creating and migrating the SQLite file unless `storage` is given) and
    /// prepares the threads and listeners; does not listen yet.
    /// - Parameter storage: a store to use instead of SQLite in `configuration.dataDirectory`
    ///   (tests inject one that fails on demand).
    /// - Throws: when the data directory or database cannot be opened.
    public init(configuration: ServerConfiguration, storage: (any Storage)? = nil, logger: Logger = Logger(label: "parley")) throws {
        self.configuration = configuration
        self.logger = logger
        let threads = configuration.threads > 0 ? configuration.threads : System.coreCount
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        passwords = PasswordChecks(threads: System.coreCount, limit: configuration.maxPasswordChecks)
        do {
            var listeners: [any Listener] = [NativeListener(host: configuration.host, port: configuration.port, configuration: configuration)]
            if let httpPort = configuration.httpPort {
                listeners.append(try WebListener(host: configuration.host, port: httpPort, configuration: configuration))
            }
            self.listeners = listeners
            let storage = try storage ?? SQLiteStore(directory: configuration.dataDirectory, durability: configuration.durability, logger: logger)
            self.storage = storage
            commits = CommitQueue(writer: storage, lastMessageID: try storage.lastMessageID(), logger: logger)
            hub = try Hub(storage: storage, commits: commits, configuration: configuration, loops: Array(group.makeIterator()),
                          threadPool: threadPool, passwords: passwords, encoders: [NativeEncoder(), WebSocketEncoder()], logger: logger)
        } catch {
            try? threadPool.syncShutdownGracefully()
            try? passwords.pool.syncShutdownGracefully()
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    /// The port the native listener is bound to, once started.
    public var port: Int? { port(of: "native") }

    /// The port of the listener named `name` (`native`, `http`), once started.
    public func port(of name: String) -> Int? { bound.withLock { $0[name]?.localAddress?.port } }

    /// Binds every listener.
    /// - Returns: the native listener's port.
    @discardableResult
    public func start() async throws -> Int {
        for (index, listener) in listeners.enumerated() {
            let channel = try await listener.bind(hub: hub, group: group, admit: { [weak self] in self?.admit($0, listener: index) }, logger: logger)
            bound.withLock { $0[listener.name] = channel }
            logger.info("listening", metadata: ["address": "\(listener.host):\(channel.localAddress?.port ?? listener.port)", "protocol": "\(listener.name)"])
        }
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
            logger.notice("connection refused", metadata: ["peer": "\(address)", "reason": "\(refusal.message)"])
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
