import Foundation
import ParleyClient
import ParleyServer
import ParleyStore
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    static var exampleFile: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/parley.env.example").path
    }

    @Test("the commented example settings file parses and states the defaults")
    func example() throws {
        let text = try String(contentsOfFile: Self.exampleFile, encoding: .utf8)
        let values = try ServerConfiguration.parseEnvironmentFile(text)
        #expect(Set(values.keys) == Set(ServerConfiguration.environmentKeys), "the example names every setting")
        let parsed = try ServerConfiguration(environment: values)
        try parsed.validate()
        let defaults = ServerConfiguration()
        #expect(parsed.host == defaults.host)
        #expect(parsed.port == defaults.port)
        #expect(parsed.dataDirectory == defaults.dataDirectory)
        #expect(parsed.limits == defaults.limits)
        #expect(parsed.guests == defaults.guests)
        #expect(parsed.registration == defaults.registration)
        #expect(parsed.bcryptCost == defaults.bcryptCost)
        #expect(parsed.durability == defaults.durability)
        #expect(parsed.loginTimeout == defaults.loginTimeout)
        #expect(parsed.idleTimeout == defaults.idleTimeout)
        #expect(parsed.threads == defaults.threads)
        #expect(parsed.httpPort == defaults.httpPort)
        #expect(parsed.allowedOrigins == defaults.allowedOrigins && parsed.trustedProxies == defaults.trustedProxies)
    }

    @Test("settings override defaults; bad values are named")
    func overrides() throws {
        let c = try ServerConfiguration(environment: ["PARLEY_PORT": "6000", "PARLEY_GUESTS": "yes", "PARLEY_DURABILITY": "full", "PARLEY_MAX_TEXT": "10"])
        #expect(c.port == 6000)
        #expect(c.guests)
        #expect(c.durability == .full)
        #expect(c.limits.maxMessageLength == 10)
        #expect(throws: ServerConfiguration.InvalidSetting.self) { try ServerConfiguration(environment: ["PARLEY_PORT": "lots"]) }
        #expect(throws: ServerConfiguration.InvalidSetting.self) { try ServerConfiguration(environment: ["PARLEY_GUESTS": "maybe"]) }
        #expect(throws: ServerConfiguration.InvalidSetting.self) { try ServerConfiguration.parseEnvironmentFile("NOT A SETTING") }
        var bad = ServerConfiguration()
        bad.limits.maxFrameSize = 10
        #expect(throws: ServerConfiguration.InvalidSetting.self) { try bad.validate() }
    }
}

@Suite("Configuration precedence through the shared builder")
struct ConfigurationPrecedenceTests {
    @Test("flags win over the environment, which wins over the file; the server built from it uses the result")
    func precedence() async throws {
        let directory = NSTemporaryDirectory() + "parley-precedence-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = NSTemporaryDirectory() + "parley-precedence-\(UUID().uuidString).env"
        try """
            PARLEY_NAME=from-file
            PARLEY_MAX_TEXT=10
            PARLEY_PRESENCE_LIMIT=7
            PARLEY_PORT=1
            PARLEY_DATA_DIR=\(directory)
            """.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let configuration = try ServerConfiguration.resolve(
            file: file,
            environment: ["PARLEY_NAME": "from-env", "PARLEY_MAX_TEXT": "20", "HOME": "/ignored", "PARLEY_BCRYPT_COST": "4"],
            flags: ["PARLEY_MAX_TEXT": "30", "PARLEY_PORT": "0"])
        #expect(configuration.serverName == "from-env", "the environment beats the file")
        #expect(configuration.limits.maxMessageLength == 30, "a flag beats both")
        #expect(configuration.presenceThreshold == 7, "the file beats the defaults")
        #expect(throws: ServerConfiguration.InvalidSetting.self) {
            try ServerConfiguration.resolve(environment: ["PARLEY_PORT": "99999"])
        }
        let server = try ParleyServer(configuration: configuration)
        let port = try await server.start()
        #expect(port > 1 && server.port(of: "native") == port, "port 0 from the flag: a free port was picked")
        let client = try await ParleyClient.connect(host: "127.0.0.1", port: port)
        #expect(client.hello.server == "from-env")
        #expect(client.hello.maxText == 30)
        #expect(client.hello.presenceLimit == 7)
        await client.close()
        await server.shutdown()
    }
}
