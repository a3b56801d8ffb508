import Foundation
import Logging
import NIOCore
import NIOPosix
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyWire
import Testing

/// TLS on the native and HTTP ports, with a certificate authority made in the test by openssl
/// (``TestPKI``): real servers, real sockets, the real client library and `parley chat`.
@Suite("End to end: TLS", .timeLimit(.minutes(3)), .enabled(if: TestPKI.available))
struct TLSTests {
    /// Registers and logs in `name` on `client`, and waits for the end of its replay.
    static func signIn(_ client: ParleyClient, _ name: String) async throws {
        try await client.register(name, password: TestServer.password)
        try await client.login(name, password: TestServer.password)
        _ = try await client.replay()
    }

    /// The error `body` throws, in words; nil when it does not throw.
    static func failure<T>(_ body: () async throws -> T) async -> String? {
        do {
            _ = try await body()
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// The client error of a connection attempt that must fail; records an issue when it succeeds.
    static func refused(_ connect: () async throws -> ParleyClient, sourceLocation: SourceLocation = #_sourceLocation) async throws -> ParleyClient.ClientError? {
        do {
            let client = try await connect()
            await client.close()
            Issue.record("the connection succeeded", sourceLocation: sourceLocation)
            return nil
        } catch let error as ParleyClient.ClientError {
            return error
        }
    }

    /// Where a test's server reads its certificate and key.
    static func served(_ pki: TestPKI) -> (certificate: String, key: String) {
        (pki.directory + "/served.pem", pki.directory + "/served.key")
    }

    /// Puts `pair` where the server reads its certificate, as an ACME client's deploy hook does
    /// (a new file renamed over the old).
    static func install(_ pair: (certificate: String, key: String), at served: (certificate: String, key: String)) throws {
        for (from, to) in [(pair.certificate, served.certificate), (pair.key, served.key)] {
            try? FileManager.default.removeItem(atPath: to + ".new")
            try FileManager.default.copyItem(atPath: from, toPath: to + ".new")
            guard rename(to + ".new", to) == 0 else { throw TestPKIError(message: "cannot rename \(to).new") }
        }
    }

    @Test("a native client over TLS logs in and talks with a client on the plain loopback port; it sees the server's certificate")
    func nativeOverTLS() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let s = try await TestServer.startTLS(try await pki.issue(serial: 0x1001))
        defer { s.removeData() }
        let plainPort = try #require(s.plainPort)
        #expect(plainPort != s.port)
        #expect(s.server.tlsCertificate?.serial == "1001")
        let alice = try await s.connectTLS(ca: pki.caCertificate)
        #expect(alice.usesTLS)
        let certificate = try #require(try await alice.serverCertificate())
        #expect(certificate.serial == "1001")
        #expect(certificate.subject == "parley-test-1001")
        #expect(certificate.issuer == pki.name)
        try await Self.signIn(alice, "alice")
        let bob = try await ParleyClient.connect(host: "127.0.0.1", port: plainPort, group: MultiThreadedEventLoopGroup.singleton)
        #expect(try await bob.serverCertificate() == nil)
        try await Self.signIn(bob, "bob")
        try await alice.send("over TLS")
        #expect(try await bob.nextMessage { $0.text == "over TLS" }.from == "alice")
        try await bob.send("in plain, on loopback", to: "alice")
        #expect(try await alice.nextMessage { $0.text == "in plain, on loopback" }.from == "bob")
        // By name: `localhost` goes out as SNI and is checked against the certificate's DNS name.
        let byName = try await s.connectTLS(ca: pki.caCertificate, host: "localhost")
        #expect(byName.hello.type == "hello")
        await byName.close()
        await alice.close()
        await bob.close()
        await s.stop()
    }

    @Test("a certificate from another authority, or for another name, is refused with a clear message; the server goes on")
    func untrustedCertificate() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let stranger = try await TestPKI.make(name: "Some Other CA")
        defer { stranger.remove() }
        let s = try await TestServer.startTLS(try await pki.issue(serial: 0x1001))
        defer { s.removeData() }
        // Another authority's CA file; and the system's roots, which know nothing of the test's CA.
        var trusts: [String?] = [stranger.caCertificate]
        if FileManager.default.fileExists(atPath: "/etc/ssl/certs/ca-certificates.crt") { trusts.append(nil) }
        for ca in trusts {
            let error = try await Self.refused { try await s.connectTLS(ca: ca) }
            guard case .untrustedCertificate? = error else {
                Issue.record("expected an untrusted certificate, got \(String(describing: error))")
                continue
            }
            let trust = ca.map { "the CA in \($0)" } ?? "the system's trust roots"
            #expect(error?.description.hasPrefix("the server's certificate is not trusted: it does not verify against \(trust)") == true,
                    "\(String(describing: error))")
        }
        // The right authority, a name the certificate does not hold.
        let named = try await TestServer.startTLS(try await pki.issue(serial: 0x1002, namesOnly: true))
        defer { named.removeData() }
        let misnamed = try await Self.refused {
            try await ParleyClient.connect(host: "127.0.0.1", port: named.port, group: MultiThreadedEventLoopGroup.singleton,
                                           tls: ClientTLS(caFile: pki.caCertificate, serverName: "chat.example.org"))
        }
        await named.stop()
        #expect(misnamed == .untrustedCertificate("it is not valid for chat.example.org"))
        #expect(misnamed?.description == "the server's certificate is not trusted: it is not valid for chat.example.org")
        // The server is unaffected.
        let alice = try await s.connectTLS(ca: pki.caCertificate)
        try await Self.signIn(alice, "alice")
        try await alice.send("still serving")
        try await eventually("the refused connections to be gone") { s.server.connectionCount == 1 }
        await alice.close()
        await s.stop()
    }

    @Test("a plain client on the TLS ports fails cleanly, whatever it sends, and the server goes on serving")
    func plainClientOnTLSPort() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let s = try await TestServer.startTLS(try await pki.issue(serial: 0x1001), http: true)
        defer { s.removeData() }
        let http = try #require(s.server.port(of: "http"))
        // A TLS port says nothing until the client's handshake: the plain client's wait for the
        // hello ends with a hint.
        let waited = try await Self.refused {
            try await ParleyClient.connect(host: "127.0.0.1", port: s.port, timeout: 1, group: MultiThreadedEventLoopGroup.singleton)
        }
        #expect(waited == .timedOut("hello (if the port speaks TLS, connect with TLS)"))
        // A plain client that sends at once is cut off at once (not at the login timeout).
        let native = try RawSocket(port: s.port)
        try native.write(BadInputTests.framed(#"{"type":"login","username":"alice","password":"correct horse"}"#))
        #expect(native.closedByServer(timeout: 5), "the server closes a plain native client on the TLS port")
        let browser = try RawSocket(port: http)
        try browser.write("GET / HTTP/1.1\r\nHost: 127.0.0.1:\(http)\r\n\r\n")
        #expect(browser.closedByServer(timeout: 5), "the server closes plain HTTP on the HTTPS port")
        // A plain WebSocket client (its upgrade request in clear) fails too.
        #expect(await Self.failure {
            try await ParleyClient.connect(host: "127.0.0.1", port: http, timeout: 5, group: MultiThreadedEventLoopGroup.singleton, webSocket: true)
        } != nil)
        // TLS clients are served as before, native and WSS.
        let alice = try await s.connectTLS(ca: pki.caCertificate)
        try await Self.signIn(alice, "alice")
        let web = try await s.connectTLS(ca: pki.caCertificate, webSocket: true)
        try await Self.signIn(web, "webby")
        try await web.send("after the plain ones")
        _ = try await alice.nextMessage { $0.text == "after the plain ones" }
        try await eventually("only the TLS clients to be connected") { s.server.connectionCount == 2 }
        await alice.close()
        await web.close()
        await s.stop()
    }

    @Test("a TLS client on a plain port fails cleanly with a clear message, and the plain port goes on serving")
    func tlsClientOnPlainPort() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let s = try await TestServer.start { $0.httpPort = 0 }
        defer { s.removeData() }
        for webSocket in [false, true] {
            let error = try await Self.refused { try await s.connectTLS(ca: pki.caCertificate, webSocket: webSocket, timeout: 5) }
            guard case .tlsFailed(let why)? = error else {
                Issue.record("expected a TLS failure (webSocket: \(webSocket)), got \(String(describing: error))")
                continue
            }
            #expect(why.hasPrefix("the server did not answer in TLS") || why.hasPrefix("the server closed the connection"), "\(why)")
            #expect(error?.description.hasPrefix("TLS failed: ") == true)
        }
        let alice = try await s.user("alice")
        try await alice.send("plain as ever")
        try await eventually("the TLS attempts to be gone") { s.server.connectionCount == 1 }
        await alice.close()
        await s.stop()
    }

    @Test("a client over a connection limit is told why once the TLS handshake is done")
    func refusalOverTLS() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let s = try await TestServer.startTLS(try await pki.issue(serial: 0x1001), plainPort: false) { $0.maxConnections = 1 }
        defer { s.removeData() }
        let first = try await s.connectTLS(ca: pki.caCertificate)
        await expectError(.tooManyConnections) { try await s.connectTLS(ca: pki.caCertificate) }
        await first.close()
        await s.stop()
    }

    @Test("a reload puts a renewed certificate in place for new connections and keeps open ones; bad files are refused and change nothing")
    func reload() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let first = try await pki.issue(serial: 0x1001)
        let served = Self.served(pki)
        func install(certificate: String, key: String) throws { try Self.install((certificate, key), at: served) }
        try install(certificate: first.certificate, key: first.key)
        let s = try await TestServer.startTLS(served, plainPort: false)
        defer { s.removeData() }
        let alice = try await s.connectTLS(ca: pki.caCertificate)
        try await Self.signIn(alice, "alice")
        #expect(try await alice.serverCertificate()?.serial == "1001")

        // Renewed: a new certificate and key.
        let second = try await pki.issue(serial: 0x1002)
        try install(certificate: second.certificate, key: second.key)
        let summary = try s.server.reloadTLS()
        #expect(summary.serial == "1002")
        #expect(summary.subject == "parley-test-1002")
        #expect(Set(summary.names) == ["localhost", "127.0.0.1"])
        #expect(s.server.tlsCertificate == summary)
        let bob = try await s.connectTLS(ca: pki.caCertificate)
        #expect(try await bob.serverCertificate()?.serial == "1002", "a new connection gets the new certificate")
        try await Self.signIn(bob, "bob")
        // The open connection was not dropped and keeps the certificate it started with.
        #expect(alice.isActive)
        #expect(try await alice.serverCertificate()?.serial == "1001")
        try await alice.send("across the reload")
        _ = try await bob.nextMessage { $0.text == "across the reload" }
        try await bob.send("from the new certificate")
        _ = try await alice.nextMessage { $0.text == "from the new certificate" }

        // Bad files: each reload is refused with the file named, and the certificate in use stays.
        try "not a certificate\n".write(toFile: served.certificate, atomically: true, encoding: .utf8)
        let notPEM = try #require(await Self.failure { try s.server.reloadTLS() })
        #expect(notPEM.contains("\(served.certificate) holds no PEM certificate"), "\(notPEM)")
        try install(certificate: second.certificate, key: first.key)
        let mismatch = try #require(await Self.failure { try s.server.reloadTLS() })
        #expect(mismatch.contains("the private key in \(served.key) does not belong to the certificate in \(served.certificate)"), "\(mismatch)")
        try FileManager.default.removeItem(atPath: served.key)
        let missing = try #require(await Self.failure { try s.server.reloadTLS() })
        #expect(missing == "cannot read the TLS private key file \(served.key): No such file or directory", "\(missing)")
        #expect(s.server.tlsCertificate?.serial == "1002")
        let carol = try await s.connectTLS(ca: pki.caCertificate)
        #expect(try await carol.serverCertificate()?.serial == "1002", "after refused reloads the last good certificate is served")
        await carol.close()
        await alice.close()
        await bob.close()
        await s.stop()
    }

    @Test("parley admin reload re-reads the certificate and says which it is; bad files are refused with the file named",
          .enabled(if: FileManager.default.isExecutableFile(atPath: ProcessTests.executable.path)))
    func adminReload() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let served = Self.served(pki)
        let first = try await pki.issue(serial: 0x1001)
        try Self.install(first, at: served)
        let s = try await TestServer.startTLS(served, plainPort: false)
        defer { s.removeData() }
        let alice = try await s.connectTLS(ca: pki.caCertificate)
        try await Self.signIn(alice, "alice")
        let second = try await pki.issue(serial: 0x1002)
        try Self.install(second, at: served)
        let reloaded = try await s.admin("reload")
        #expect(reloaded.output.contains("certificate reloaded, for new connections: parley-test-1002 for localhost, 127.0.0.1, serial 1002"),
                "\(reloaded.output)")
        let json = try await s.admin("--json", "reload")
        let document = try #require(json.json as? [String: Any], "\(json.output)")
        #expect(document["serial"] as? String == "1002")
        try "-----BEGIN CERTIFICATE-----\ncut short\n".write(toFile: served.certificate, atomically: true, encoding: .utf8)
        let refused = try await s.admin("reload", status: 1)
        #expect((refused.output + refused.errors).contains("\(served.certificate) holds no PEM certificate"), "\(refused.errors)")
        // Nothing was dropped, and new connections still get the last good certificate.
        try await alice.send("after the reloads")
        let bob = try await s.connectTLS(ca: pki.caCertificate)
        #expect(try await bob.serverCertificate()?.serial == "1002")
        await bob.close()
        await alice.close()
        await s.stop()
        // A server without TLS says so.
        let plain = try await TestServer.start()
        defer { plain.removeData() }
        let off = try await plain.admin("reload", status: 1)
        #expect((off.output + off.errors).contains("TLS is off"), "\(off.errors)")
        await plain.stop()
    }

    @Test("start-up stops with a clear message when a file is missing, not PEM, encrypted, or the key is not the certificate's")
    func startupErrors() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let a = try await pki.issue(serial: 0x1001)
        let b = try await pki.issue(serial: 0x1002)
        try await pki.run(["pkey", "-in", a.key, "-aes256", "-passout", "pass:secret", "-out", "encrypted.key"])
        let encrypted = pki.directory + "/encrypted.key"
        let directory = NSTemporaryDirectory() + "parley-tls-start-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func start(_ certificate: String?, _ key: String?) async -> String? {
            var configuration = ServerConfiguration()
            configuration.port = 0
            configuration.httpPort = nil
            configuration.dataDirectory = directory
            configuration.tlsCertificate = certificate
            configuration.tlsKey = key
            var logger = Logger(label: "parley-test")
            logger.logLevel = .warning
            do {
                let server = try ParleyServer(configuration: configuration, logger: logger)
                await server.shutdown()
                return nil
            } catch {
                return "\(error)"
            }
        }
        let missing = pki.directory + "/missing.pem"
        let cases: [(String?, String?, String)] = [
            (missing, a.key, "cannot read the TLS certificate file \(missing): No such file or directory"),
            (a.key, a.key, "the TLS certificate file \(a.key) holds no PEM certificate"),
            (a.certificate, a.certificate, "the TLS private key file \(a.certificate) holds no PEM private key"),
            (a.certificate, encrypted, "the TLS private key in \(encrypted) is encrypted"),
            (a.certificate, b.key, "the private key in \(b.key) does not belong to the certificate in \(a.certificate)"),
            (a.certificate, nil, "a TLS certificate needs its private key"),
            (nil, a.key, "a TLS private key needs its certificate"),
        ]
        for (certificate, key, expected) in cases {
            let message = await start(certificate, key)
            #expect(message?.hasPrefix(expected) == true, "\(String(describing: message)) should start with \(expected)")
        }
        #expect(await start(a.certificate, a.key) == nil, "the right pair starts")
    }

    @Test("the WebSocket over WSS: a client in WebSocket mode logs in over TLS and talks with a native TLS client")
    func webSocketOverTLS() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let s = try await TestServer.startTLS(try await pki.issue(serial: 0x1001), http: true, plainPort: false)
        defer { s.removeData() }
        let web = try await s.connectTLS(ca: pki.caCertificate, webSocket: true)
        #expect(try await web.serverCertificate()?.serial == "1001")
        try await Self.signIn(web, "webby")
        let native = try await s.connectTLS(ca: pki.caCertificate)
        try await Self.signIn(native, "nat")
        try await web.send("over WSS")
        #expect(try await native.nextMessage { $0.text == "over WSS" }.from == "webby")
        // A reply large enough to take several TLS records and WebSocket frames' worth of bytes.
        let long = String(repeating: "0123456789", count: 390)
        try await native.send(long, to: "webby")
        #expect(try await web.nextMessage { $0.from == "nat" }.text == long)
        await web.close()
        await native.close()
        await s.stop()
    }

    @Test("parley chat --tls --ca connects in line mode and talks; without the CA it says the certificate is not trusted",
          .enabled(if: FileManager.default.isExecutableFile(atPath: ProcessTests.executable.path)))
    func chatOverTLS() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let s = try await TestServer.startTLS(try await pki.issue(serial: 0x1001), plainPort: false)
        defer { s.removeData() }
        let bob = try await s.connectTLS(ca: pki.caCertificate)
        try await Self.signIn(bob, "bob")
        let (out, status) = try await Self.chat(["--port", "\(s.port)", "--tls", "--ca", pki.caCertificate, "--user", "alice", "--register"],
                                                input: "hello over TLS\n/quit\n")
        #expect(status == 0, "\(out)")
        #expect(out.split(separator: "\n").contains { $0.hasSuffix(" alice: hello over TLS") }, "\(out)")
        _ = try await bob.nextMessage { $0.text == "hello over TLS" && $0.from == "alice" }
        // The system's roots do not know the test's authority.
        let (untrusted, untrustedStatus) = try await Self.chat(["--port", "\(s.port)", "--tls", "--user", "alice"], input: "")
        #expect(untrustedStatus == 1)
        #expect(untrusted.contains("Could not connect to 127.0.0.1:\(s.port): the server's certificate is not trusted"), "\(untrusted)")
        await bob.close()
        await s.stop()
    }

    /// Runs `parley chat` with `arguments`, piping `input` to it (line mode); its output and exit status.
    static func chat(_ arguments: [String], input: String) async throws -> (String, Int32) {
        let run = try await runProgram(ProcessTests.executable, ["chat"] + arguments, input: input,
                                       environment: ["PARLEY_PASSWORD": TestServer.password])
        return (run.output, run.status)
    }
}
