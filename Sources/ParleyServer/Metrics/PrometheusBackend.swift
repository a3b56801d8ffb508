import Metrics
import Prometheus

/// One server's Prometheus registry and the swift-metrics factory that fills it.
///
/// Why not `MetricsSystem.bootstrap` alone: swift-metrics' global factory can be set once per
/// process, while the tests run many servers in one process, each of which must count its own
/// traffic. So every ``ParleyServer`` owns a `PrometheusCollectorRegistry` and makes its metric
/// objects (swift-metrics `Counter`, `Meter`, `Recorder`, `Timer`) from a
/// `PrometheusMetricsFactory` on that registry, never from the global factory; `/metrics` renders
/// that registry. `parley serve`, which runs one server, also bootstraps the global system with
/// the same factory (``ParleyServer/bootstrapMetricsSystem()``), so anything a library counts
/// through swift-metrics shows up on the same page.
/// Thread safety: `Sendable`; the registry has its own lock and the metrics are atomics.
struct PrometheusBackend: Sendable {
    let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory

    /// Buckets of the commit batch size (operations per transaction, at most 4,096).
    static let batchSizeBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
    /// Buckets of the commit latency: SQLite commits take from tens of microseconds (WAL,
    /// `synchronous=NORMAL`) to milliseconds (`full`, an fsync) and more on a slow disk.
    static let commitDurationBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500),
    ]

    init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets[ServerMetrics.Name.commitBatchSize] = Self.batchSizeBuckets
        factory.durationHistogramBuckets[ServerMetrics.Name.commitDuration] = Self.commitDurationBuckets
        self.factory = factory
    }

    /// The factory every metric of this server is made from.
    var metricsFactory: any MetricsFactory { factory }

    /// The registry in Prometheus' text format (version 0.0.4), with a `# HELP` line before each
    /// family's `# TYPE` line where `help` has one (metrics made through swift-metrics carry no
    /// help text of their own).
    func exposition(help: [String: String]) -> String {
        let raw = registry.emitToString()
        var out = ""
        out.reserveCapacity(raw.utf8.count + help.count * 80)
        for line in raw.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let name = line.dropFirst("# TYPE ".count).prefix { $0 != " " }
                if let text = help[String(name)] { out += "# HELP \(name) \(text)\n" }
            }
            out += line
            out += "\n"
        }
        return out
    }
}
