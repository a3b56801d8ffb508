import Foundation
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyStore
import ParleyTestSupport
import ParleyWire
import Synchronization
import Testing

@Suite("End to end: metrics and health", .timeLimit(.minutes(2)))
struct MetricsTests {
    /// A server with the metrics listener on a free port (and HTTP, for WebSocket sessions).
    static func start(storage: (any Storage)? = nil) async throws -> (TestServer, metrics: Int) {
        let s = try await TestServer.start(storage: storage) {
            $0.metricsPort = 0
            $0.httpPort = 0
        }
        return (s, try #require(s.server.port(of: "metrics")))
    }

    /// `/metrics`, checked to be served as Prometheus text and parsed strictly.
    static func scrape(_ port: Int) async throws -> PrometheusText {
        let response = try await WebSocketTests.get("/metrics", port: port)
        #expect(response.status == 200)
        #expect(response.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true, "\(response.headers)")
        return try PrometheusText(parsing: String(decoding: response.body, as: UTF8.self))
    }

    /// Some of everything: logins that work and one that does not, messages of every kind, a group.
    static func traffic(_ s: TestServer) async throws -> [ParleyClient] {
        let (alice, _) = try await s.login("alice")
        let (bob, _) = try await s.login("bob")
        let intruder = try await s.connect()
        await expectError(.invalidCredentials) { try await intruder.login("alice", password: "not her password") }
        await intruder.close()
        for i in 0..<5 { _ = try await alice.send("hello \(i)") }
        _ = try await bob.nextMessage { $0.text == "hello 4" }
        _ = try await alice.send("psst", to: "bob")
        _ = try await alice.request(.group(.create(group: "devs", inviteOnly: false)))
        _ = try await alice.send("devs only", in: "devs")
        return [alice, bob]
    }

    @Test("/metrics is Prometheus text, and its counters and gauges move with the traffic")
    func countersMove() async throws {
        let (s, port) = try await Self.start()
        defer { s.removeData() }
        let before = try await Self.scrape(port)
        #expect(before.value("parley_messages_total", ["kind": "general"]) == 0)
        #expect(before.value("parley_users_online") == 0)
        #expect(before.value("parley_store_accepting_writes") == 1)
        #expect(before.help["parley_messages_total"] != nil, "families have help text")
        #expect(before.types["parley_commit_duration_seconds"] == "histogram")

        let clients = try await Self.traffic(s)
        let web = try await RawWebSocket.connect(port: try #require(s.server.port(of: "http")))
        let after = try await Self.scrape(port)
        #expect(after.value("parley_messages_total", ["kind": "general"]) == 5)
        #expect(after.value("parley_messages_total", ["kind": "private"]) == 1)
        #expect(after.value("parley_messages_total", ["kind": "group"]) == 1)
        // 5 to general (alice and bob each), 1 private (both), 1 to a group of one.
        #expect(after.value("parley_deliveries_total") == Double(5 * 2 + 2 + 1))
        #expect(after.value("parley_logins_total", ["method": "password", "outcome": "success"]) == 2)
        #expect(after.value("parley_logins_total", ["method": "password", "outcome": "invalid_credentials"]) == 1)
        #expect(after.value("parley_errors_total", ["code": "INVALID_CREDENTIALS"]) == 1)
        #expect(after.value("parley_users_online") == 2)
        #expect(after.value("parley_sessions", ["transport": "native"]) == 2)
        #expect(after.value("parley_sessions", ["transport": "websocket"]) == 0)
        #expect(after.sum("parley_connections", matching: ["transport": "native"]) >= 2)
        #expect(after.sum("parley_connections", matching: ["transport": "http"]) >= 1, "the WebSocket connection")
        #expect(try #require(after.value("parley_commit_batch_size_count")) >= 1)
        #expect(try #require(after.value("parley_commit_batch_size_sum")) >= 7, "at least the 7 messages")
        #expect(try #require(after.value("parley_commit_duration_seconds_count")) >= 1)
        #expect(try #require(after.value("parley_replay_pages_total")) >= 0)
        #expect(after.value("parley_password_checks_waiting") == 0)
        #expect(after.value("parley_commit_backlog") == 0)
        #expect(try #require(after.value("parley_uptime_seconds")) > 0)
        await web.close()
        for client in clients { await client.close() }
        await s.stop()
    }

    @Test("a replay is counted in pages; a slow consumer is counted when it is cut off")
    func replayPages() async throws {
        let (s, port) = try await Self.start()
        defer { s.removeData() }
        try await s.register("bob")
        let (alice, _) = try await s.login("alice")
        for i in 0..<3 { _ = try await alice.send("while bob was away \(i)") }
        let (bob, replayed) = try await s.login("bob", register: false)
        #expect(replayed.count == 3)
        let metrics = try await Self.scrape(port)
        #expect(metrics.value("parley_replay_pages_total") == 1)
        #expect(metrics.value("parley_slow_consumers_total") == 0)
        await alice.close()
        await bob.close()
        await s.stop()
    }

    @Test("/health: 200 while the store accepts writes, 503 with the reason once it refuses them, 200 again when it is back")
    func health() async throws {
        let directory = NSTemporaryDirectory() + "parley-health-" + UUID().uuidString
        let store = try FailingStore(directory: directory)
        let (s, port) = try await Self.start(storage: store)
        defer {
            s.removeData()
            try? FileManager.default.removeItem(atPath: directory)
        }
        let healthy = try await WebSocketTests.get("/health", port: port)
        #expect(healthy.status == 200)
        #expect(healthy.headers["content-type"] == "application/json")
        let ok = try #require(try JSONSerialization.jsonObject(with: Data(healthy.body)) as? [String: Any])
        #expect(ok["status"] as? String == "ok")
        #expect(ok["store"] as? String == "ok")
        #expect((ok["listeners"] as? [String: String]) == ["native": "up", "http": "up", "metrics": "up"])

        let (alice, _) = try await s.login("alice")
        store.failing.store(true, ordering: .relaxed)
        await expectError(.storageFailed) { try await alice.send("this cannot be stored") }
        let failing = try await WebSocketTests.get("/health", port: port)
        #expect(failing.status == 503)
        let down = try #require(try JSONSerialization.jsonObject(with: Data(failing.body)) as? [String: Any])
        #expect(down["status"] as? String == "unavailable")
        #expect(down["store"] as? String == "failing")
        #expect((down["reason"] as? String)?.contains("store") == true, "\(down)")
        #expect(try await Self.scrape(port).value("parley_store_accepting_writes") == 0)
        #expect(try await Self.scrape(port).value("parley_errors_total", ["code": "STORAGE_FAILED"]) == 1)

        // The store comes back: the next health check asks it again and finds it writable, with
        // nothing else written meanwhile.
        store.failing.store(false, ordering: .relaxed)
        let again = try await WebSocketTests.get("/health", port: port)
        #expect(again.status == 200, "\(String(decoding: again.body, as: UTF8.self))")
        #expect(try await Self.scrape(port).value("parley_store_accepting_writes") == 1)
        _ = try await alice.send("stored again")
        await alice.close()
        await s.stop()
    }

    @Test("two servers in one process count separately, and a server without a metrics port has no metrics listener")
    func separateServers() async throws {
        let (a, portA) = try await Self.start()
        let (b, portB) = try await Self.start()
        defer { a.removeData(); b.removeData() }
        let (alice, _) = try await a.login("alice")
        _ = try await alice.send("only on a")
        #expect(try await Self.scrape(portA).value("parley_messages_total", ["kind": "general"]) == 1)
        #expect(try await Self.scrape(portB).value("parley_messages_total", ["kind": "general"]) == 0)
        let plain = try await TestServer.start()
        defer { plain.removeData() }
        #expect(plain.server.port(of: "metrics") == nil)
        await plain.stop()
        await alice.close()
        await a.stop()
        await b.stop()
    }

    @Test("the strict reader refuses what Prometheus would not take")
    func readerIsStrict() throws {
        let good = """
        # HELP x_total Things.
        # TYPE x_total counter
        x_total{a="1",b="q\\"uote\\\\"} 3
        # TYPE h histogram
        h_bucket{le="1.0"} 1
        h_bucket{le="+Inf"} 2
        h_sum 3.5
        h_count 2

        """
        let parsed = try PrometheusText(parsing: good)
        #expect(parsed.value("x_total", ["a": "1", "b": "q\"uote\\"]) == 3)
        for bad in [
            "x 1",  // no final line break
            "x{a=\"1\"} one\n",
            "x{a=1} 1\n",
            "9x 1\n",
            "x 1\nx 2\n",
            "# TYPE x counter\nx -1\n",
            "x 1\ny 1\nx{a=\"b\"} 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1.0\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_sum 1\nh_count 1\n",
            "x 1\n\ny 2\n",
        ] {
            #expect(throws: PrometheusText.ParseError.self, "\(bad)") { try PrometheusText(parsing: bad) }
        }
    }

    /// The shipped Grafana dashboard.
    static var dashboardPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/grafana/parley-dashboard.json").path
    }

    @Test("docs/grafana/parley-dashboard.json is a Grafana dashboard on a Prometheus data source, and every metric it queries exists on a live server")
    func grafanaDashboard() async throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.dashboardPath))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(dashboard["title"] as? String == "Parley")
        #expect(dashboard["uid"] is String)
        let variables = try #require((dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]])
        let source = try #require(variables.first { $0["type"] as? String == "datasource" })
        #expect(source["query"] as? String == "prometheus")
        let sourceName = try #require(source["name"] as? String)
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        #expect(panels.count >= 10)
        #expect(Set(panels.compactMap { $0["id"] as? Int }).count == panels.count, "panel ids are unique")
        var expressions: [String] = []
        for panel in panels where panel["type"] as? String != "row" {
            let title = panel["title"] as? String ?? "?"
            #expect((panel["datasource"] as? [String: Any])?["uid"] as? String == "${\(sourceName)}", "\(title) uses the data source variable")
            #expect(panel["gridPos"] is [String: Any], "\(title) has a place")
            let targets = try #require(panel["targets"] as? [[String: Any]], "\(title) has queries")
            #expect(!targets.isEmpty)
            for target in targets {
                expressions.append(try #require(target["expr"] as? String, "\(title) has an expression"))
            }
        }
        var queried = Set<String>()
        for expression in expressions {
            for match in expression.matches(of: /parley_[a-zA-Z0-9_:]*/) { queried.insert(String(match.output)) }
        }
        #expect(queried.count >= 12, "\(queried.sorted())")

        let (s, port) = try await Self.start()
        defer { s.removeData() }
        let clients = try await Self.traffic(s)
        let exposed = try await Self.scrape(port)
        let names = exposed.sampleNames.union(exposed.types.keys)
        for name in queried.sorted() {
            #expect(names.contains(name), "the dashboard queries \(name), which /metrics does not have")
        }
        // And every family the server exposes is on the dashboard.
        for family in exposed.types.keys.sorted() {
            #expect(queried.contains { $0 == family || $0.hasPrefix(family + "_") }, "\(family) is not on the dashboard")
        }
        for client in clients { await client.close() }
        await s.stop()
    }
}
