import Foundation
import ParleyClient
import ParleyServer
import ParleyStore
import Testing

/// Files and helpers shared by the configuration tests.
enum ConfigurationFiles {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var example: String { root.appendingPathComponent("docs/parley.example.yaml").path }
    static var operating: String { root.appendingPathComponent("docs/OPERATING.md").path }
    static let begin = "<!-- BEGIN generated configuration reference -->"
    static let end = "<!-- END generated configuration reference -->"

    /// Writes `text` to a new file in the temporary folder whose name ends in `suffix`.
    static func write(_ text: String, suffix: String) throws -> String {
        let path = NSTemporaryDirectory() + "parley-settings-\(UUID().uuidString)\(suffix)"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The message of the error `resolve` throws, or `nil` when it succeeds.
    static func failure(_ arguments: [String] = [], environment: [String: String] = [:]) async -> String? {
        do {
            _ = try await ServerConfiguration.resolve(arguments: arguments, environment: environment)
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// The keys of the declared settings whose values differ between the two configurations.
    static func sameSettings(_ a: ServerConfiguration, _ b: ServerConfiguration) -> [String] {
        ServerSettings.all.filter { $0.text(in: a) != $0.text(in: b) }.map(\.key)
    }

    /// A note for a generated file that differs: where the expected text was written.
    static func mismatch(_ expected: String, _ name: String) -> Comment {
        let path = NSTemporaryDirectory() + "expected-\(name)"
        try? expected.write(toFile: path, atomically: true, encoding: .utf8)
        return "\(name) differs from the declarations (expected text in \(path)); run scripts/generate-config-docs"
    }
}

@Suite("Configuration: the declarations and what is made from them")
struct SettingDeclarationTests {
    @Test("every setting has its own key, flag and variable, a default that is allowed, and a group")
    func declarations() throws {
        let settings = ServerSettings.all
        #expect(Set(settings.map(\.key)).count == settings.count)
        #expect(Set(settings.map(\.environmentVariable)).count == settings.count)
        let flags = settings.flatMap(\.flagForms).map { $0.split(separator: " ")[0] }
        #expect(Set(flags).count == flags.count, "no two settings share a flag")
        for setting in settings {
            #expect(setting.environmentVariable.hasPrefix("PARLEY_"), "\(setting.key)")
            #expect(setting.key.split(separator: ".").count <= 2, "\(setting.key): one level of groups")
            #expect(!setting.help.isEmpty && !setting.flag.hasPrefix("-"), "\(setting.key)")
            #expect(setting.isAllowed(in: ServerConfiguration()), "the default of \(setting.key) is allowed")
        }
        let grouped = ServerSettings.groups.flatMap { ServerSettings.settings(in: $0).map(\.key) }
        #expect(grouped.sorted() == settings.map(\.key).sorted(), "every setting is in exactly one group")
        try ServerConfiguration().validate()
    }

    @Test("help names every setting's flag, variable, key and default")
    func help() {
        let help = ServerSettings.help
        for setting in ServerSettings.all {
            #expect(help.contains(setting.synopsis), "\(setting.key)")
            #expect(help.contains("key \(setting.key); "), "\(setting.key)")
            #expect(help.contains(setting.environmentVariable), "\(setting.key)")
        }
        #expect(help.split(separator: "\n").allSatisfy { $0.count <= 100 || !$0.contains(" ") })
    }

    @Test("the reference in docs/OPERATING.md is the one made from the declarations")
    func reference() throws {
        let text = try String(contentsOfFile: ConfigurationFiles.operating, encoding: .utf8)
        let start = try #require(text.range(of: ConfigurationFiles.begin), "docs/OPERATING.md has the generated section's markers")
        let end = try #require(text.range(of: ConfigurationFiles.end))
        let committed = text[start.upperBound..<end.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
        let expected = ServerSettings.reference.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(committed == expected, ConfigurationFiles.mismatch(ServerSettings.reference, "configuration-reference.md"))
        for setting in ServerSettings.all {
            #expect(committed.contains("| `\(setting.key)` |"), "\(setting.key) is in the reference")
        }
    }

    @Test("the README's table of common settings names only declared flags, variables and keys")
    func readme() throws {
        let text = try String(contentsOfFile: ConfigurationFiles.root.appendingPathComponent("README.md").path, encoding: .utf8)
        let section = try #require(text.range(of: "## Running the server"))
        let rows = text[section.upperBound...].split(separator: "\n").prefix { !$0.hasPrefix("## ") }.filter { $0.hasPrefix("| `") }
        #expect(rows.count >= 5)
        let flags = Set(ServerSettings.all.flatMap(\.flagForms).map { String($0.split(separator: " ")[0]) })
        let variables = Set(ServerSettings.all.map(\.environmentVariable))
        let keys = Set(ServerSettings.all.map(\.key))
        for row in rows {
            let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            let names = cells.prefix(3).flatMap { $0.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) } }
            for name in names {
                let word = String(name.split(separator: " ")[0])
                #expect(flags.contains(word) || variables.contains(word) || keys.contains(word), "README names \(word), which is not declared")
            }
        }
    }

    @Test("docs/parley.example.yaml is the one made from the declarations, and parses to the defaults")
    func example() async throws {
        let committed = try String(contentsOfFile: ConfigurationFiles.example, encoding: .utf8)
        let expected = ServerSettings.yaml(for: ServerConfiguration())
        #expect(committed == expected, ConfigurationFiles.mismatch(expected, "parley.example.yaml"))
        let parsed = try await ServerConfiguration.resolve(arguments: ["--config", ConfigurationFiles.example])
        #expect(ConfigurationFiles.sameSettings(parsed, ServerConfiguration()) == [], "every setting in the example is its default")
        for setting in ServerSettings.all {
            let name = String(setting.key.split(separator: ".").last!)
            #expect(committed.contains("\n\(name): ") || committed.contains("\n  \(name): ") || committed.contains("# \(name): "),
                    "the example shows \(setting.key)")
        }
    }

    @Test("a configuration printed as YAML reads back the same")
    func roundTrip() async throws {
        var configuration = ServerConfiguration()
        configuration.serverName = "round \"trip\""
        configuration.httpPort = nil
        configuration.publicNames = ["chat.example.org", "chat.example.com"]
        configuration.guests = true
        configuration.loginTimeout = 0.5
        configuration.durability = .full
        configuration.logFormat = .json
        configuration.tlsCertificate = "/etc/parley/cert.pem"
        configuration.tlsKey = "/etc/parley/key.pem"
        configuration.plainPort = 5556
        configuration.metricsPort = 9464
        let file = try ConfigurationFiles.write(ServerSettings.yaml(for: configuration), suffix: ".yaml")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let parsed = try await ServerConfiguration.resolve(arguments: ["--config", file])
        #expect(ConfigurationFiles.sameSettings(parsed, configuration) == [])
    }
}

@Suite("Configuration: sources, precedence and mistakes")
struct ConfigurationTests {
    @Test("flags win over the environment, which wins over a YAML file, which wins over the defaults (text, number, switch, list, port or off)")
    func precedenceYAML() async throws {
        let file = try ConfigurationFiles.write("""
            name: from-file
            limits:
              maxText: 10
              presence: 7
            accounts:
              guests: true
            http:
              port: 9000
              publicNames: [a.example, b.example]
            timeouts.login: 12.5
            """, suffix: ".yaml")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let c = try await ServerConfiguration.resolve(
            arguments: ["--config", file, "--max-text", "30", "--no-guests", "--public-name", "c.example", "--public-name=d.example"],
            environment: ["PARLEY_NAME": "from-env", "PARLEY_MAX_TEXT": "20", "PARLEY_GUESTS": "yes", "PARLEY_HTTP_PORT": "off", "HOME": "/ignored"])
        #expect(c.serverName == "from-env", "the environment beats the file")
        #expect(c.limits.maxMessageLength == 30, "a flag beats both")
        #expect(!c.guests, "--no-guests beats the environment's yes")
        #expect(c.httpPort == nil, "off from the environment beats the file's port")
        #expect(c.publicNames == ["c.example", "d.example"], "a repeated flag adds up, and replaces the file's list")
        #expect(c.presenceThreshold == 7, "the file beats the defaults")
        #expect(c.loginTimeout == 12.5, "a dotted key in the file")
        #expect(c.host == ServerConfiguration().host && c.port == ServerConfiguration().port, "defaults stay")
    }

    @Test("a JSON file: nested keys, numbers, a quoted number, a list")
    func json() async throws {
        let file = try ConfigurationFiles.write("""
            {"port": "6000", "durability": "full", "limits": {"maxOutbox": 8192}, "http": {"port": "off", "trustedProxies": ["10.0.0.1"]},
             "accounts": {"registration": false}, "timeouts": {"idle": 60}}
            """, suffix: ".json")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let c = try await ServerConfiguration.resolve(arguments: ["--config", file])
        #expect(c.port == 6000)
        #expect(c.durability == .full)
        #expect(c.limits.maxOutboxBytes == 8192)
        #expect(c.httpPort == nil)
        #expect(c.trustedProxies == ["10.0.0.1"])
        #expect(!c.registration)
        #expect(c.idleTimeout == 60)
    }

    @Test("the KEY=VALUE file of earlier versions still works, under the environment and the flags")
    func keyValueFile() async throws {
        let file = try ConfigurationFiles.write("""
            # an old settings file
            PARLEY_NAME=from-file
            PARLEY_PORT=6001
            PARLEY_PRESENCE_LIMIT=7
            PARLEY_GUESTS=1
            PARLEY_HTTP_PORT=off
            PARLEY_ALLOWED_ORIGINS=https://a.example, https://b.example
            PARLEY_LOG_LEVEL="debug"
            """, suffix: ".env")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let c = try await ServerConfiguration.resolve(arguments: ["--config", file, "--port", "6002"], environment: ["PARLEY_NAME": "from-env"])
        #expect(c.serverName == "from-env")
        #expect(c.port == 6002)
        #expect(c.presenceThreshold == 7)
        #expect(c.guests)
        #expect(c.httpPort == nil)
        #expect(c.allowedOrigins == ["https://a.example", "https://b.example"])
        #expect(c.logLevel == "debug", "PARLEY_LOG_LEVEL is a setting like the others")
        let unknown = try ConfigurationFiles.write("PARLEY_PROT=1\n", suffix: ".env")
        defer { try? FileManager.default.removeItem(atPath: unknown) }
        let message = try #require(await ConfigurationFiles.failure(["--config", unknown]))
        #expect(message.contains("PARLEY_PROT") && message.contains("PARLEY_PORT"), "\(message)")
        let garbled = try ConfigurationFiles.write("PARLEY_PORT=1\nNOT A SETTING\n", suffix: ".env")
        defer { try? FileManager.default.removeItem(atPath: garbled) }
        let line = try #require(await ConfigurationFiles.failure(["--config", garbled]))
        #expect(line.contains("line 2"), "\(line)")
    }

    @Test("a value that is not allowed is named with where it came from, the value and what is allowed")
    func badValues() async throws {
        let yaml = try ConfigurationFiles.write("http:\n  port: eighty\n", suffix: ".yaml")
        let json = try ConfigurationFiles.write(#"{"accounts": {"bcryptCost": 99}}"#, suffix: ".json")
        defer { for file in [yaml, json] { try? FileManager.default.removeItem(atPath: file) } }
        let cases: [(arguments: [String], environment: [String: String], mentions: [String])] = [
            (["--config", yaml], [:], ["http.port", yaml, "eighty", "0-65535, or off"]),
            (["--config", json], [:], ["accounts.bcryptCost", "99", "4-31"]),
            ([], ["PARLEY_PORT": "lots"], ["PARLEY_PORT", "lots", "0-65535"]),
            ([], ["PARLEY_GUESTS": "maybe"], ["PARLEY_GUESTS", "maybe", "true or false"]),
            ([], ["PARLEY_LOGIN_TIMEOUT": "0"], ["PARLEY_LOGIN_TIMEOUT", "'0'", "above 0"]),
            (["--port", "99999"], [:], ["--port", "99999", "0-65535"]),
            (["--durability", "sometimes"], [:], ["--durability", "sometimes", "normal or full"]),
            (["--log-level", "loud"], [:], ["--log-level", "loud", "warning"]),
            (["--allowed-origin", "chat.example.com"], [:], ["--allowed-origin", "chat.example.com", "https://"]),
            (["--max-frame", "2048"], [:], ["limits.maxTextBytes", "limits.maxFrame"]),
            (["--tls-cert", "/etc/cert.pem"], [:], ["tls.key", "--tls-key"]),
            (["--plain-port", "5556"], [:], ["--plain-port", "tls.cert"]),
        ]
        for (arguments, environment, mentions) in cases {
            let message = try #require(await ConfigurationFiles.failure(arguments, environment: environment), "\(arguments) \(environment) is refused")
            for part in mentions {
                #expect(message.contains(part), "'\(message)' names \(part)")
            }
        }
    }

    @Test("an unknown key in the file, an unknown flag or a flag without its value stops start-up; an unknown variable is a warning")
    func unknownNames() async throws {
        let file = try ConfigurationFiles.write("htp:\n  port: 1\nlimits:\n  maxFrames: 70000\n", suffix: ".yml")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let message = try #require(await ConfigurationFiles.failure(["--config", file]))
        #expect(message.contains("htp.port") && message.contains("limits.maxFrames") && message.contains("limits.maxFrame"), "\(message)")
        let flag = try #require(await ConfigurationFiles.failure(["--prot", "1"]))
        #expect(flag.contains("--prot") && flag.contains("--port"), "\(flag)")
        let positional = try #require(await ConfigurationFiles.failure(["6000"]))
        #expect(positional.contains("6000"), "\(positional)")
        let missing = try #require(await ConfigurationFiles.failure(["--port"]))
        #expect(missing.contains("--port"), "\(missing)")
        let switchValue = try #require(await ConfigurationFiles.failure(["--guests=yes"]))
        #expect(switchValue.contains("--guests"), "\(switchValue)")
        let absent = try #require(await ConfigurationFiles.failure(["--config", "/nonexistent/parley.yaml"]))
        #expect(absent.contains("/nonexistent/parley.yaml"), "\(absent)")

        let warnings = ServerConfiguration.environmentWarnings([
            "PARLEY_MAX_CONECTIONS": "5", "PARLEY_PASSWORD": "secret", "PARLEY_PORT": "1", "HOME": "/root",
        ])
        #expect(warnings.count == 1, "\(warnings)")
        #expect(warnings.first?.contains("PARLEY_MAX_CONECTIONS") == true && warnings.first?.contains("PARLEY_MAX_CONNECTIONS") == true)
        _ = try await ServerConfiguration.resolve(environment: ["PARLEY_MAX_CONECTIONS": "5"])
    }

    @Test("the command line: --help, --print-config, --no-http, --config and --flag=value")
    func commandLine() throws {
        #expect(try ServerArguments(["--port", "1", "--help"]).action == .help)
        #expect(try ServerArguments(["-h"]).action == .help)
        #expect(try ServerArguments(["--print-config"]).action == .printConfig)
        #expect(try ServerArguments(["--print-config-reference"]).action == .printReference)
        let arguments = try ServerArguments(["--config", "x.yaml", "--no-http", "--port=7"])
        #expect(arguments.action == .serve && arguments.configFile == "x.yaml")
    }
}

@Suite("Configuration precedence through the shared builder")
struct ConfigurationPrecedenceTests {
    @Test("the server built from the resolved configuration uses it")
    func precedence() async throws {
        let directory = NSTemporaryDirectory() + "parley-precedence-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = try ConfigurationFiles.write("""
            name: from-file
            port: 1
            dataDir: "\(directory)"
            http:
              port: off
            limits:
              maxText: 10
              presence: 7
            """, suffix: ".yaml")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let configuration = try await ServerConfiguration.resolve(
            arguments: ["--config", file, "--max-text", "30", "--port", "0"],
            environment: ["PARLEY_NAME": "from-env", "PARLEY_MAX_TEXT": "20", "HOME": "/ignored", "PARLEY_BCRYPT_COST": "4"])
        #expect(configuration.serverName == "from-env", "the environment beats the file")
        #expect(configuration.limits.maxMessageLength == 30, "a flag beats both")
        #expect(configuration.presenceThreshold == 7, "the file beats the defaults")
        let server = try ParleyServer(configuration: configuration)
        let port = try await server.start()
        #expect(port > 1 && server.port(of: "native") == port, "port 0 from the flag: a free port was picked")
        #expect(server.port(of: "http") == nil, "HTTP off from the file")
        let client = try await ParleyClient.connect(host: "127.0.0.1", port: port)
        #expect(client.hello.server == "from-env")
        #expect(client.hello.maxText == 30)
        #expect(client.hello.presenceLimit == 7)
        await client.close()
        await server.shutdown()
    }
}
