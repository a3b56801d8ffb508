import ArgumentParser
import Foundation
import Logging
import ParleyServer
import ParleyStore
import ServiceLifecycle

/// `parley serve`: runs the server until SIGINT/SIGTERM.
///
/// Its settings are declared once, in `ServerSettings` (ParleyServer), not as ArgumentParser
/// options: the arguments are captured whole (`.captureForPassthrough`, which also hands us
/// `--help` and `-h` instead of ArgumentParser answering them) and read by `ServerArguments`;
/// `--help` prints the help made from the declarations.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the chat server.",
        discussion: """
            Every setting is a flag, a PARLEY_* environment variable and a key of the settings file \
            (--config parley.yaml); `parley serve --help` lists them all.
            """)

    @Argument(
        parsing: .captureForPassthrough,
        help: ArgumentHelp("Settings: --config FILE and --SETTING VALUE; `parley serve --help` lists them.", valueName: "setting"))
    var arguments: [String] = []

    /// The arguments, read against the declared settings.
    func serverArguments() throws -> ServerArguments {
        do {
            return try ServerArguments(arguments)
        } catch let error as ServerConfiguration.InvalidSetting {
            throw ValidationError(error.description)
        }
    }

    mutating func validate() throws {
        // Unknown flags and bad values are usage errors; help is printed from the declarations.
        if try serverArguments().action == .help { throw CleanExit.message(ServerSettings.help) }
    }

    /// Defaults, then the settings file, then the environment, then the flags.
    func configuration(
        _ arguments: ServerArguments, environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> ServerConfiguration {
        do {
            return try await ServerConfiguration.resolve(arguments, environment: environment)
        } catch let error as ServerConfiguration.InvalidSetting {
            throw ValidationError(error.description)
        }
    }

    func run() async throws {
        limitMallocArenas()
        let arguments = try serverArguments()
        if arguments.action == .printReference {
            print(ServerSettings.reference, terminator: "")
            return
        }
        let environment = ProcessInfo.processInfo.environment
        var configuration = try await configuration(arguments, environment: environment)
        if arguments.action == .printConfig {
            print(ServerSettings.yaml(for: configuration), terminator: "")
            return
        }
        raiseFileLimit()
        let descriptors = openFileLimit()
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            // What strangers send (names, origins, addresses) is escaped before it is written.
            return EscapingLogHandler(handler)
        }
        let logger = Logger(label: "parley")
        for warning in ServerConfiguration.environmentWarnings(environment) {
            logger.warning("\(warning)")
        }
        // Every connection is a file descriptor: keep the cap below what the process may open, with
        // headroom for the database, the listeners and the log, so that a connection over it is
        // still accepted and told why instead of waiting unaccepted.
        // (0, no limit, is taken at its word: past the descriptors, accepting pauses.)
        let headroom = 64
        if descriptors > 0, configuration.maxConnections > descriptors - headroom {
            let capped = max(descriptors - headroom, 16)
            logger.warning("the file-descriptor limit is low: lowering the connection limit to stay below it", metadata: [
                "descriptors": "\(descriptors)", "max-connections": "\(capped)", "configured": "\(configuration.maxConnections)",
            ])
            configuration.maxConnections = capped
        }
        let server = try ParleyServer(configuration: configuration, logger: logger)
        let port = try await server.start()
        Console.line("parley \(configuration.serverName) listening on \(configuration.host):\(port) (native protocol); data in \(configuration.dataDirectory)")
        if let httpPort = server.port(of: "http") {
            let shown = configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host
            Console.line("browser client: http://\(shown == "0.0.0.0" ? "localhost" : shown):\(httpPort)/")
        }
        let group = ServiceGroup(configuration: .init(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
