import Foundation
import Logging
import NIOCore
import NIOPosix
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyStore
import ParleyWire
import Testing

/// A real server on port 0 with a temporary data directory, and helpers to connect real clients.
final class TestServer: Sendable {
    let server: ParleyServer
    let port: Int
    let directory: String
    static let password = "correct horse"

    static func start(directory: String? = nil, storage: (any Storage)? = nil, _ configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> TestServer {
        var configuration = ServerConfiguration()
        configuration.port = 0
        configuration.dataDirectory = directory ?? NSTemporaryDirectory() + "parley-e2e-" + UUID().uuidString
        configuration.bcryptCost = 4
        configuration.httpPort = nil  // WebSocket tests ask for one (port 0)
        configure(&configuration)
        var logger = Logger(label: "parley-test")
        logger.logLevel = .warning
        let server = try ParleyServer(configuration: configuration, storage: storage, logger: logger)
        let port = try await server.start()
        return TestServer(server: server, port: port, directory: configuration.dataDirectory)
    }

    /// A server on the same data and port as one just stopped. The port is free once the old
    /// connections have closed on both sides, so binding is tried again for up to 20 s.
    static func restart(directory: String, port: Int, _ configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> TestServer {
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            do {
                return try await start(directory: directory) {
                    configure(&$0)
                    $0.port = port
                }
            } catch where ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    init(server: ParleyServer, port: Int, directory: String) {
        self.server = server
        self.port = port
        self.directory = directory
    }

    /// A connected client that has not logged in.
    func connect(receiveBuffer: Int? = nil, from source: String? = nil) async throws -> ParleyClient {
        try await ParleyClient.connect(host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton, receiveBuffer: receiveBuffer,
                                       from: source)
    }

    /// A server speaking TLS with `certificate` (a ``TestPKI/issue(serial:)`` pair) on its native
    /// port, and on HTTP when `http` (port 0), with the plain loopback port when `plainPort`.
    static func startTLS(_ certificate: (certificate: String, key: String), http: Bool = false, plainPort: Bool = true,
                         _ configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> TestServer {
        try await start {
            $0.tlsCertificate = certificate.certificate
            $0.tlsKey = certificate.key
            if plainPort { $0.plainPort = 0 }
            if http { $0.httpPort = 0 }
            configure(&$0)
        }
    }

    /// A client over TLS that trusts the authority in `ca` (not logged in): on the native port, or
    /// over WSS on the HTTP port with `webSocket`.
    func connectTLS(ca: String?, host: String = "127.0.0.1", webSocket: Bool = false, timeout: Double = 10) async throws -> ParleyClient {
        var target = port
        if webSocket { target = try #require(server.port(of: "http")) }
        return try await ParleyClient.connect(host: host, port: target, timeout: timeout, group: MultiThreadedEventLoopGroup.singleton,
                                              webSocket: webSocket, tls: ClientTLS(caFile: ca))
    }

    /// The plain loopback port kept beside a TLS one.
    var plainPort: Int? { server.port(of: "native-plain") }

    /// Registers `name` (unless `register` is false), logs in, and waits for the end of the replay.
    /// - Returns: the client and the replayed messages.
    func login(_ name: String, register: Bool = true) async throws -> (ParleyClient, [WireMessage]) {
        let client = try await connect()
        if register { try await client.register(name, password: Self.password) }
        try await client.login(name, password: Self.password)
        return (client, try await client.replay())
    }

    /// Registers `name` on a connection of its own and closes it: an account that is offline.
    func register(_ name: String) async throws {
        let setup = try await connect()
        try await setup.register(name, password: Self.password)
        await setup.close()
    }

    /// `count` pipelined `send` requests to general, with ids 1…count and texts `prefix` + id.
    static func sends(_ count: Int, text prefix: String = "m") -> [UInt8] {
        var bytes: [UInt8] = []
        for i in 1...count { bytes += BadInputTests.framed(#"{"type":"send","id":\#(i),"room":"general","text":"\#(prefix)\#(i)"}"#) }
        return bytes
    }

    func user(_ name: String, register: Bool = true) async throws -> ParleyClient {
        try await login(name, register: register).0
    }

    func stop() async { await server.shutdown() }

    func removeData() { try? FileManager.default.removeItem(atPath: directory) }
}

/// Waits until `condition` holds, checking every 10 ms, for at most `timeout` seconds.
func eventually(_ what: String, timeout: Double = 10, _ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("timed out waiting for \(what)")
    throw ParleyClient.ClientError.timedOut(what)
}

/// Asserts that `body` throws a ``ParleyError`` with `code`.
func expectError<T>(_ code: ParleyError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T) async {
    do {
        _ = try await body()
        Issue.record("expected \(code), got success", sourceLocation: sourceLocation)
    } catch let error as ParleyError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

extension ParleyClient {
    /// The next presence change about `user`: whether they came online.
    func presence(of user: String) async throws -> Bool {
        let event = try await next("presence of \(user)") { $0.presenceChanges?.contains { $0.username == user } == true }
        return event.presenceChanges!.last { $0.username == user }!.online
    }

    /// The messages replayed after login, up to and checked against `replay_end`.
    func replay() async throws -> [WireMessage] {
        var replayed: [WireMessage] = []
        while true {
            let event = try await next(timeout: 10, "the replay") { event in
                if case .replayEnd = event { return true }
                return event.message?.replay == true
            }
            if case .replayEnd(let count) = event {
                #expect(count == replayed.count)
                return replayed
            }
            replayed.append(event.message!)
        }
    }

    /// Waits for "`user` has gone offline".
    func wentOffline(_ user: String) async throws {
        _ = try await next("\(user) going offline") { $0.presenceChanges?.contains { $0.username == user && !$0.online } == true }
    }

    /// The next group event of `kind` in `group`, as the frame the server sent.
    func groupEvent(_ kind: String, in group: String, user: String? = nil) async throws -> ServerFrame {
        try await nextFrame("\(kind) in \(group)") {
            $0.type == "group" && $0.event == kind && $0.group == group && (user == nil || $0.username == user)
        }
    }
}
