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
        // Standard error (or the console, when it owns the terminal) and, with --log-dir, one file
        // per UTC date; what strangers send (names, origins, addresses) is escaped before it is written.
        let logs = try ParleyLogging.bootstrap(configuration: configuration)
        defer { logs.stop() }
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
        // One server in this process: swift-metrics' global factory may be its own.
        server.bootstrapMetricsSystem()
        let port = try await server.start()
        let tls = configuration.tlsCertificate != nil
        Console.line("parley \(configuration.serverName) listening on \(configuration.host):\(port) (native protocol\(tls ? " over TLS" : "")); data in \(configuration.dataDirectory)")
        if let httpPort = server.port(of: "http") {
            let shown = configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host
            Console.line("browser client: \(tls ? "https" : "http")://\(shown == "0.0.0.0" ? "localhost" : shown):\(httpPort)/")
        }
        if let plain = server.port(of: "native-plain") {
            Console.line("plain native protocol on 127.0.0.1:\(plain)")
        }
        if let metricsPort = server.port(of: "metrics") {
            let host = configuration.metricsHost.contains(":") ? "[\(configuration.metricsHost)]" : configuration.metricsHost
            Console.line("metrics: http://\(host):\(metricsPort)/metrics and /health")
        }
        let group = ServiceGroup(configuration: .init(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        // `parley admin shutdown` and the console's `exit` stop the server as SIGTERM does.
        server.onShutdownRequest { Task { await group.triggerGracefulShutdown() } }
        // SIGHUP re-reads the TLS certificate and key (as `parley admin reload` does), and
        // otherwise changes nothing: it no longer ends the server.
        signal(SIGHUP, SIG_IGN)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hangup.setEventHandler {
            guard tls else {
                logger.notice("SIGHUP: nothing to reload (TLS is not configured)")
                return
            }
            _ = try? server.reloadTLS()
        }
        hangup.resume()
        defer { hangup.cancel() }
        var console: ServerConsole? = nil
        if configuration.console && ServerConsole.available {
            console = ServerConsole(server: server, operatorName: Admin.loginName())
            console?.start()
        }
        defer { console?.stop() }
        try await group.run()
    }
}
