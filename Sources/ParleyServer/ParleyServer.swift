import Foundation
import Logging
import NIOCore
import NIOPosix
import ParleyCore
import ParleyStore
import ParleyWire
import ServiceLifecycle
import Synchronization

/// The Parley server: storage, hub and the native TCP listener, as one ServiceLifecycle `Service`.
///
/// `parley serve` and the tests both build it from a ``ServerConfiguration``; tests bind port 0
/// and read ``port``. Shutdown tells every client, closes the connections, writes what is
/// pending to the database, and stops the threads.
/// Thread safety: `Sendable`; ``start()``, ``run()`` and ``shutdown()`` may be called from any task.
public final class ParleyServer: Service, Sendable {
    public let configuration: ServerConfiguration
    public let store: Store
    let hub: Hub
    let group: MultiThreadedEventLoopGroup
    let threadPool: NIOThreadPool
    let logger: Logger
    private let listener = Mutex<(any Channel)?>(nil)
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])
    private let stopped = Mutex(false)

    /// Opens the store (creating and migrating it) and prepares the threads; does not listen yet.
    /// - Throws: when the data directory or database cannot be opened.
    public init(configuration: ServerConfiguration, logger: Logger = Logger(label: "parley")) throws {
        self.configuration = configuration
        self.logger = logger
        let threads = configuration.threads > 0 ? configuration.threads : System.coreCount
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        threadPool = NIOThreadPool(numberOfThreads: max(2, System.coreCount))
        threadPool.start()
        do {
            store = try Store(directory: configuration.dataDirectory, durability: configuration.durability, logger: logger)
            hub = try Hub(store: store, configuration: configuration, loops: Array(group.makeIterator()), threadPool: threadPool, logger: logger)
        } catch {
            try? threadPool.syncShutdownGracefully()
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    /// The port the native listener is bound to, once started.
    public var port: Int? { listener.withLock { $0?.localAddress?.port } }

    /// Binds the native protocol listener.
    @discardableResult
    public func start() async throws -> Int {
        let hub = self.hub
        let logger = self.logger
        let limits = configuration.limits
        let idle = configuration.idleTimeout
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 4096)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            // Each channel keeps up to maxMessagesPerRead receive buffers for reuse: one small
            // buffer that grows only for busy clients keeps idle connections cheap.
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 1)
            .childChannelOption(ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65536))
            .childChannelOption(
                ChannelOptions.writeBufferWaterMark,
                value: .init(low: limits.maxOutboxBytes / 2, high: limits.maxOutboxBytes))
            .childChannelInitializer { [weak self] channel in
                self?.track(channel)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: .milliseconds(Int64(idle * 1000))),
                        ByteToMessageHandler(FrameDecoder(maxFrameSize: limits.maxFrameSize)),
                        Connection(hub: hub, logger: logger),
                    ])
                }
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        listener.withLock { $0 = channel }
        let port = channel.localAddress?.port ?? configuration.port
        startMemoryTrim()
        logger.info("listening", metadata: ["address": "\(configuration.host):\(port)", "protocol": "native"])
        return port
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

    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        connections.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.connections.withLock { $0.removeValue(forKey: id) }
        }
    }

    /// Runs until a graceful shutdown is requested (SIGINT/SIGTERM through the ServiceGroup), then shuts down.
    public func run() async throws {
        if port == nil { try await start() }
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Tells clients, closes connections, writes pending work to disk and stops the threads. Idempotent.
    public func shutdown() async {
        guard stopped.withLock({ was in defer { was = true }; return !was }) else { return }
        logger.info("shutting down")
        hub.state.withLock { $0.shuttingDown = true }
        if let listener = listener.withLock({ $0 }) {
            try? await listener.close()
        }
        let open = connections.withLock { Array($0.values) }
        var notice = ServerFrame(type: "shutdown")
        notice.message = "the server is shutting down"
        for channel in open {
            channel.eventLoop.execute {
                let timer = channel.eventLoop.scheduleTask(in: .seconds(3)) { channel.close(promise: nil) }
                channel.writeAndFlush(notice.frame(allocator: channel.allocator)).whenComplete { _ in
                    timer.cancel()
                    channel.close(promise: nil)
                }
            }
        }
        for channel in open {
            try? await channel.closeFuture.get()
        }
        // Each closed session queued its read position; write everything that is pending.
        let store = self.store
        try? await threadPool.runIfActive { store.close() }
        try? await threadPool.shutdownGracefully()
        try? await group.shutdownGracefully()
        logger.info("stopped")
    }

    /// Number of open connections (logged in or not).
    public var connectionCount: Int { connections.withLock { $0.count } }
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
