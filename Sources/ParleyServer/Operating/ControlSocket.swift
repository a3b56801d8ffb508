import Foundation
import Logging
import NIOCore
import NIOPosix
import ParleyCore
#if canImport(Glibc)
import Glibc
#endif

/// The control socket `parley admin` talks to: a Unix-domain socket (mode 0600: only the
/// server's OS user may connect; nothing on the network), by default `parley.sock` in the data
/// directory.
///
/// One command per connection. The client sends one line of JSON, `{"words":[...],"by":"NAME"}`;
/// the server answers with lines of JSON: any number of `{"data":"..."}` (what `export`
/// streams, each written only after the one before has left, so memory stays flat), then one
/// `{"ok":true,"text":"...","json":{...}}` or `{"ok":false,"error":"...","confirm":"..."}`.
/// Thread safety: `Sendable`; ``start(path:server:group:logger:)`` once, ``stop()`` once.
final class ControlSocket: Sendable {
    let path: String
    let channel: any Channel

    private init(path: String, channel: any Channel) {
        self.path = path
        self.channel = channel
    }

    /// Longest request line accepted.
    static let maxRequest = 64 * 1024
    /// How long a client has to send its request.
    static let requestTimeout = TimeAmount.seconds(10)

    /// A control socket that could not be opened, with a message for the operator.
    struct Unavailable: Error, CustomStringConvertible {
        var description: String
    }

    /// Binds the socket at `path`: a socket left there by a server that crashed is replaced, one
    /// that another running server answers on is not (start-up fails, naming it).
    static func start(path: String, server: ParleyServer, group: any EventLoopGroup, logger: Logger) async throws -> ControlSocket {
        guard path.utf8.count < 100 else {
            throw Unavailable(description: "the control socket path is too long for a Unix socket (\(path.utf8.count) bytes, at most 99): set --control-socket")
        }
        if FileManager.default.fileExists(atPath: path) {
            if Self.answers(path) {
                throw Unavailable(description: "another parley server is running with this control socket (\(path)); stop it, or give this one another --data-dir or --control-socket")
            }
            // Left by a server that did not stop cleanly, if it is a socket; anything else is not ours.
            var info = stat()
            guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK else {
                throw Unavailable(description: "another file is at the control socket's path (\(path)), and it is not a socket: move it, or set --control-socket")
            }
            unlink(path)
            logger.info("removed a stale control socket", metadata: ["path": "\(path)"])
        }
        // Created private (umask 0177 while it is bound, so the socket never has a wider mode),
        // bound under a temporary name and moved into place when ready.
        let temporary = path + ".\(getpid()).new"
        unlink(temporary)
        let previous = umask(0o177)
        defer { umask(previous) }
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ControlConnection(server: server, logger: logger))
                }
            }
            .bind(unixDomainSocketPath: temporary, cleanupExistingSocketFile: false).get()
        guard chmod(temporary, 0o600) == 0, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? await channel.close()
            unlink(temporary)
            throw Unavailable(description: "cannot set up the control socket at \(path): \(reason)")
        }
        return ControlSocket(path: path, channel: channel)
    }

    /// Whether something accepts connections at `path` (a running server).
    static func answers(_ path: String) -> Bool {
        guard case .success(let fd) = UnixSocket.connect(path) else { return false }
        close(fd)
        return true
    }

    /// Stops listening and removes the socket file.
    func stop() async {
        try? await channel.close()
        unlink(path)
    }
}

/// The request line `parley admin` sends.
struct ControlRequest: Codable, Sendable {
    var words: [String]
    /// Who is asking (the operator's OS user name), shown to kicked and banned users.
    var by: String?
}

/// One control connection: reads the request line, performs it, streams the answer, closes.
/// Thread safety: a channel handler; used on its channel's event loop only.
final class ControlConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let server: ParleyServer
    let logger: Logger
    private var received = ByteBuffer()
    private var started = false
    private var deadline: Scheduled<Void>?

    init(server: ParleyServer, logger: Logger) {
        self.server = server
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: ControlSocket.requestTimeout) { channel.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !started else { return }
        var bytes = unwrapInboundIn(data)
        received.writeBuffer(&bytes)
        guard let newline = received.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if received.readableBytes > ControlSocket.maxRequest {
                started = true
                Self.finish(context.channel, ["ok": false, "error": "the request is too long"])
            }
            return
        }
        started = true
        deadline?.cancel()
        let line = received.getSlice(at: received.readerIndex, length: newline - received.readerIndex) ?? ByteBuffer()
        let channel = context.channel
        guard let request = try? JSONDecoder().decode(ControlRequest.self, from: Data(line.readableBytesView)) else {
            Self.finish(channel, ["ok": false, "error": "the request is not a control request (JSON with words)"])
            return
        }
        Self.spawn(request, server: server, channel: channel)
    }

    private static func spawn(_ request: ControlRequest, server: ParleyServer, channel: any Channel) {
        Task { await run(request, server: server, channel: channel) }
    }

    /// Performs one request and writes its answer, then closes the connection.
    static func run(_ request: ControlRequest, server: ParleyServer, channel: any Channel) async {
        let command: AdminCommand
        do {
            command = try AdminCommand.parse(request.words)
        } catch {
            finish(channel, ["ok": false, "error": error.description])
            return
        }
        do {
            let reply = try await server.perform(command, by: request.by ?? "the operator") { text in
                try await channel.writeAndFlush(Self.line(["data": text])).get()
            }
            var final = line(["ok": true, "text": reply.text])
            // The reply's JSON document, spliced in whole.
            final.moveWriterIndex(to: final.writerIndex - 2)
            final.writeString(",\"json\":" + reply.json + "}\n")
            try? await channel.writeAndFlush(final).get()
            try? await channel.close()
        } catch let error as AdminError {
            var answer: [String: any Sendable] = ["ok": false, "error": error.description]
            if let confirm = error.confirm { answer["confirm"] = confirm }
            finish(channel, answer)
        } catch {
            finish(channel, ["ok": false, "error": "\(error)"])
        }
    }

    /// A JSON object and a line break.
    static func line(_ object: [String: any Sendable]) -> ByteBuffer {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        var buffer = ByteBufferAllocator().buffer(capacity: data.count + 1)
        buffer.writeBytes(data)
        buffer.writeString("\n")
        return buffer
    }

    /// Writes the last line and closes.
    static func finish(_ channel: any Channel, _ object: [String: any Sendable]) {
        channel.writeAndFlush(line(object)).whenComplete { _ in channel.close(promise: nil) }
    }
}
