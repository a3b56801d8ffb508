import Logging
import Metrics
import NIOCore
import ParleyCore
import ParleyStore

/// Metrics and health: what `/metrics` and `/health` show, and the listener that serves them.
extension ParleyServer {
    /// Makes swift-metrics' global factory this server's own, so that whatever a library counts
    /// through `MetricsSystem` appears on this server's `/metrics` page too.
    ///
    /// swift-metrics accepts one bootstrap per process (a second one stops the process): call it
    /// at most once, from the executable (`parley serve` does). Tests, which run many servers in
    /// one process, do not; each server counts into its own registry either way.
    public func bootstrapMetricsSystem() {
        MetricsSystem.bootstrap(metrics.metricsFactory)
    }

    /// The `/metrics` page: the gauges read from the server's state now, then every metric, in
    /// Prometheus' text format (version 0.0.4).
    public func metricsExposition() -> String {
        let (users, perFormat) = hub.state.withLock { ($0.users.count, $0.sessionsPerFormat) }
        let perListener = connections.withLock { c -> [Int] in
            var counts = [Int](repeating: 0, count: listeners.count)
            for entry in c.open.values where entry.listener < counts.count { counts[entry.listener] += 1 }
            return counts
        }
        let snapshot = ServerMetrics.Snapshot(
            connections: zip(listeners, perListener).map { (transport: $0.name, count: $1) },
            sessions: perFormat.enumerated().map { (transport: Self.transportName(format: $0), count: $1) },
            usersOnline: users,
            passwordChecksWaiting: passwords.queued,
            commitBacklog: commits.backlog,
            storeAccepting: commits.storeHealth.accepting)
        return metrics.exposition(snapshot)
    }

    /// The name of a wire format's transport in metrics (the names the users' session lists use).
    static func transportName(format index: Int) -> String {
        switch index {
        case WireFormat.native.index: "native"
        case WireFormat.webSocket.index: "websocket"
        default: "format_\(index)"
        }
    }

    /// Whether the server can serve: healthy while it is not shutting down, the store accepts
    /// writes and every listener is bound. Once a write has failed, the store is asked again
    /// (``CommitQueue/probe(_:)``, at most 2 s), so a store that has come back is seen at once,
    /// even on a server with nothing to write.
    /// - Returns: whether it is healthy and the JSON `/health` answers:
    ///   `{"status":"ok","store":"ok","listeners":{"native":"up",...},"sessions":3,"commit_backlog":0}`,
    ///   with `"status":"unavailable"` and a `"reason"` when it is not.
    func health() async -> MetricsListener.Health {
        let (shuttingDown, sessions) = hub.state.withLock { ($0.shuttingDown, $0.sessionsPerFormat.reduce(0, +)) }
        var store = commits.storeHealth
        if !store.accepting, !shuttingDown {
            _ = await probeStore(within: .seconds(2))
            store = commits.storeHealth
        }
        let channels = bound.withLock { $0 }
        var names = listeners.map(\.name)
        if metricsListener != nil { names.append(MetricsListener.name) }
        let states = names.map { (name: $0, up: channels[$0]?.isActive ?? false) }
        var reasons: [String] = []
        if shuttingDown { reasons.append("the server is shutting down") }
        if !store.accepting {
            reasons.append("the store refuses writes" + (store.lastRefusal.map { " (last refusal \($0.iso8601))" } ?? ""))
        }
        let down = states.filter { !$0.up }.map(\.name)
        if !down.isEmpty { reasons.append("not listening: " + down.joined(separator: ", ")) }
        let healthy = reasons.isEmpty
        var json = "{\"status\":" + (healthy ? "\"ok\"" : "\"unavailable\"")
        if !healthy {
            json += ",\"reason\":"
            LogLineFormat.appendJSONString(reasons.joined(separator: "; "), to: &json)
        }
        json += ",\"store\":" + (store.accepting ? "\"ok\"" : "\"failing\"")
        json += ",\"listeners\":{" + states.map { "\"\($0.name)\":\"\($0.up ? "up" : "down")\"" }.joined(separator: ",") + "}"
        json += ",\"sessions\":\(sessions),\"commit_backlog\":\(commits.backlog)}"
        return MetricsListener.Health(healthy: healthy, body: json)
    }

    /// Asks the store whether it accepts writes again; false when it does not answer in time
    /// (the commit queue is stuck behind a write that hangs).
    private func probeStore(within limit: TimeAmount) async -> Bool {
        let loop = group.next()
        let answer = loop.makePromise(of: Bool.self)
        commits.probe { answer.succeed($0) }
        let timer = loop.scheduleTask(in: limit) { answer.succeed(false) }
        let accepted = (try? await answer.futureResult.get()) ?? false
        timer.cancel()
        return accepted
    }

    /// Binds the metrics listener, when a metrics port is configured. Called by ``start()`` after
    /// the chat listeners.
    func startMetricsListener() async throws {
        guard let listener = metricsListener else { return }
        let channel = try await listener.bind(
            group: group, logger: logger,
            metrics: { [weak self] in self?.metricsExposition() ?? "" },
            health: { [weak self] in
                await self?.health() ?? MetricsListener.Health(healthy: false, body: #"{"status":"unavailable","reason":"the server has stopped"}"#)
            })
        bound.withLock { $0[MetricsListener.name] = channel }
        logger.info("listening", metadata: [
            "address": "\(listener.host):\(channel.localAddress?.port ?? listener.port)", "protocol": "\(MetricsListener.name)",
        ])
    }
}
