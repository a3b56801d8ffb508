import HummingbirdCore
import Logging
import NIOCore

/// Wraps the HTTP listener's child channel so that every connection speaks TLS (HTTPS, and WSS
/// after an upgrade): the TLS handler goes first in the pipeline, with the context current when
/// the connection was accepted, and the wrapped channel's setup then adds its handlers behind it.
///
/// HummingbirdTLS's `TLSChannel` does the same with one `NIOSSLContext` fixed at start; this one
/// asks ``TLSContextBox`` per connection, so a reloaded certificate reaches new connections
/// while open ones keep theirs.
/// Thread safety: a value type; `Sendable`. `setup` runs on the connection's event loop.
struct TLSChildChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let tls: TLSContextBox
    /// Parley's logger (for failed handshakes), not Hummingbird's quieted one.
    let logger: Logger

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        do {
            try channel.pipeline.syncOperations.addTLS(tls, logger: self.logger)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return base.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
