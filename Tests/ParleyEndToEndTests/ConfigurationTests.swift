import Foundation
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
