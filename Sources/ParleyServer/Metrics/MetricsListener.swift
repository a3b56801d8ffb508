import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ParleyCore

/// The operators' door: plain HTTP on its own address (`--metrics-host`, loopback unless said
/// otherwise, and `--metrics-port`), a Hummingbird 2 application on the server's own event loops.
/// - `GET /metrics`: every metric in Prometheus' text format (version 0.0.4).
/// - `GET /health`: 200 and a small JSON status while the store accepts writes and every
///   listener is up; 503 and the reason otherwise (see ``ParleyServer/health()``).
///
/// It is not a chat ``Listener``: its connections are not counted against the connection limits,
/// are not told goodbye at shutdown, and never become sessions. ``ParleyServer`` starts it after
/// the chat listeners and reports its port as `port(of: "metrics")`.
/// Thread safety: `Sendable`; the running application's task is behind a lock.
struct MetricsListener: Sendable {
    static let name = "metrics"
    let host: String
    let port: Int
    private let runtime = Runtime()

    final class Runtime: Sendable {
        let task = Locked<Task<Void, Never>?>(nil)
    }

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// What `/health` answers.
    struct Health: Sendable {
        var healthy: Bool
        /// The JSON body.
        var body: String
    }

    /// Binds and starts serving.
    /// - Parameters:
    ///   - metrics: the `/metrics` page, made at each request.
    ///   - health: the `/health` answer, made at each request.
    /// - Returns: the listening channel.
    func bind(group: any EventLoopGroup, logger: Logger, metrics: @escaping @Sendable () -> String,
              health: @escaping @Sendable () async -> Health) async throws -> any Channel {
        let router = Router()
        router.get("/metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                     body: .init(byteBuffer: ByteBuffer(string: metrics())))
        }
        router.get("/health") { _, _ -> Response in
            let answer = await health()
            return Response(status: answer.healthy ? .ok : .serviceUnavailable,
                            headers: [.contentType: "application/json", .cacheControl: "no-store"],
                            body: .init(byteBuffer: ByteBuffer(string: answer.body + "\n")))
        }
        // Hummingbird's own lines (one per request at debug) only when we log at debug.
        var hbLogger = logger
        hbLogger.logLevel = logger.logLevel <= .debug ? logger.logLevel : .critical
        let running = group.next().makePromise(of: (any Channel).self)
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in running.succeed(channel) },
            eventLoopGroupProvider: .shared(group), logger: hbLogger)
        let task = Task {
            do {
                try await app.run()
                // Ended before it ran (cancelled at once): nobody must wait for it.
                running.fail(CancellationError())
            } catch {
                running.fail(error)
            }
        }
        runtime.task.withLock { $0 = task }
        return try await running.futureResult.get()
    }

    /// Stops the application (after its channel has been closed).
    func stop() async {
        guard let task = runtime.task.withLock({ $0 }) else { return }
        task.cancel()
        await task.value
    }
}
