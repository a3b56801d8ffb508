import Foundation
import Logging
import NIOCore
import NIOSSL

/// Where TLS sits in a connection's pipeline, and how the other handlers find their place.
///
/// The TLS handler is always first, next to the socket; right after it comes
/// ``TLSHandshakeWatch``, named ``plaintextStart``. Everything else is added after these: by
/// appending, or, for the handlers that want to be nearest the socket (the HTTP guards, the
/// WebSocket idle timer and write tap), with
/// ``NIOCore/ChannelPipeline/SynchronousOperations/addHandlerAtPlaintextStart(_:name:)``,
/// which puts them right behind the watch when the connection has TLS and first when it has not.
/// A handler put at `.first` under TLS would see ciphertext, and its writes would bypass the
/// encryption.
enum TLSPipeline {
    /// The name of the `NIOSSLServerHandler`.
    static let handler = "tls"
    /// The name of the ``TLSHandshakeWatch`` right behind it: where plaintext begins.
    static let plaintextStart = "tls-plaintext"
    /// The most bytes of encrypted output the TLS handler keeps allocated between writes (NIOSSL
    /// keeps its largest buffer ever by default: one burst would pin it for the connection's life).
    static let maxPreservedOutput = 64 * 1024
}

extension ChannelPipeline.SynchronousOperations {
    /// Makes the connection speak TLS with the context current in `box`: the TLS handler first,
    /// then the watch that logs failed handshakes. Call before adding anything else.
    /// - Important: On the channel's event loop.
    func addTLS(_ box: TLSContextBox, logger: Logger) throws {
        var configuration = NIOSSLHandler.Configuration()
        configuration.maximumPreservedOutboundBufferCapacity = TLSPipeline.maxPreservedOutput
        let tls = NIOSSLServerHandler(context: box.context, configuration: configuration)
        try addHandler(tls, name: TLSPipeline.handler, position: .first)
        try addHandler(TLSHandshakeWatch(logger: logger), name: TLSPipeline.plaintextStart, position: .after(tls))
    }

    /// Adds `handler` where the connection's plaintext begins: right behind TLS when the
    /// connection has it, else first (next to the socket).
    /// - Important: On the channel's event loop.
    func addHandlerAtPlaintextStart(_ handler: any ChannelHandler, name: String? = nil) throws {
        if let start = try? context(name: TLSPipeline.plaintextStart) {
            try addHandler(handler, name: name, position: .after(start.handler))
        } else {
            try addHandler(handler, name: name, position: .first)
        }
    }
}

/// Sits right behind the TLS handler and logs a handshake that failed — a plain client on the
/// TLS port, a client that does not trust the certificate, no protocol version in common — as
/// one line without the BoringSSL error stack (`info`; `debug` for a peer that just closed
/// mid-handshake, which port scanners and health checks do all day). The TLS handler closes
/// such a connection itself; the error is not passed on, so the handlers behind do not log it
/// again. Every other event passes through untouched.
/// Thread safety: a `ChannelHandler`; used on its channel's loop only.
final class TLSHandshakeWatch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard case NIOSSLError.handshakeFailed(let failure) = error else {
            context.fireErrorCaught(error)
            return
        }
        let peer = context.channel.remoteAddress?.ipAddress ?? "?"
        let reasons = TLSFailure.reasons(failure)
        if reasons.isEmpty || reasons.allSatisfy({ $0.hasPrefix("EOF during") }) {
            logger.debug("TLS handshake not finished: the client closed the connection", metadata: ["peer": "\(peer)"])
        } else {
            logger.info("TLS handshake failed", metadata: ["peer": "\(peer)", "reason": "\(TLSFailure.explain(reasons))"])
        }
    }
}

/// BoringSSL's errors in a few words: the reason codes of its error stack
/// (`WRONG_VERSION_NUMBER`), without the file names and line numbers, and what the common ones
/// mean for an operator.
enum TLSFailure {
    /// The reason codes of an error from BoringSSL, most specific last.
    static func reasons(_ error: BoringSSLError) -> [String] {
        switch error {
        case .sslError(let stack), .unknownError(let stack), .invalidSNIName(let stack), .failedToSetALPN(let stack):
            return stack.map { reason(of: "\($0)") }
        default:
            return ["\(error)"]
        }
    }

    /// `Error: 268435703 error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER at
    /// /path/tls_record.cc:242` → `WRONG_VERSION_NUMBER`; a synthetic one (`Error:  EOF during
    /// handshake`) → its words.
    static func reason(of description: String) -> String {
        var text = Substring(description)
        if let start = text.range(of: "error:") {
            text = text[start.upperBound...]
            if let at = text.range(of: " at ") { text = text[..<at.lowerBound] }
            return String(text.split(separator: ":").last ?? text)
        }
        if text.hasPrefix("Error:") { text = text.dropFirst("Error:".count) }
        return text.trimmingCharacters(in: .whitespaces)
    }

    /// The reasons, with what the usual ones mean.
    static func explain(_ reasons: [String]) -> String {
        let joined = reasons.joined(separator: ", ")
        if reasons.contains(where: { $0 == "HTTP_REQUEST" || $0 == "HTTPS_PROXY_REQUEST" }) {
            return "a plain HTTP request on the TLS port (\(joined))"
        }
        if reasons.contains(where: { ["WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "UNEXPECTED_RECORD", "RECORD_TOO_LARGE"].contains($0) }) {
            return "not TLS: a plain client on the TLS port? (\(joined))"
        }
        if reasons.contains(where: { $0.contains("ALERT_UNKNOWN_CA") || $0.contains("ALERT_BAD_CERTIFICATE") || $0.contains("ALERT_CERTIFICATE") }) {
            return "the client does not accept this server's certificate (\(joined))"
        }
        if reasons.contains(where: { ["NO_SHARED_CIPHER", "UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_SHARED_GROUP"].contains($0) }) {
            return "no TLS version or cipher in common with the client (\(joined))"
        }
        return joined
    }

    /// Any error of NIOSSL in a few words.
    static func describe(_ error: any Error) -> String {
        switch error {
        case NIOSSLError.handshakeFailed(let failure): explain(reasons(failure))
        case let failure as BoringSSLError: explain(reasons(failure))
        default: "\(error)"
        }
    }
}
