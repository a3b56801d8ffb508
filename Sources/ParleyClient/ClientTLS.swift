import Foundation
import NIOCore
import NIOSSL

/// How a ``ParleyClient`` speaks TLS: whom it trusts and which name the server's certificate
/// must hold. The certificate is always verified; one that does not verify ends the connection
/// with ``ParleyClient/ClientError/untrustedCertificate(_:)``.
/// Thread safety: a value type; `Sendable`.
public struct ClientTLS: Sendable, Hashable {
    /// A PEM file of the certificate authorities to trust *instead of* the system's (a private
    /// CA); nil = the system's trust roots.
    public var caFile: String?
    /// The name the server's certificate must be valid for, also sent as SNI; nil = the host
    /// connected to. An IP address is checked against the certificate's IP addresses (and not sent as SNI).
    public var serverName: String?

    public init(caFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.serverName = serverName
    }

    /// A client context: TLS 1.2 or later, full verification against the system's roots or the CA file.
    /// Reads the CA file or the system's bundle (blocking).
    /// - Throws: ``ParleyClient/ClientError/tlsFailed(_:)`` when the CA file cannot be read or holds no certificate.
    func makeContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = .fullVerification
        // Closing waits this long at most for the server's close_notify.
        configuration.shutdownTimeout = .seconds(2)
        if let caFile {
            guard FileManager.default.isReadableFile(atPath: caFile) else {
                throw ParleyClient.ClientError.tlsFailed("cannot read the CA file \(caFile)")
            }
            do {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw ParleyClient.ClientError.tlsFailed("the CA file \(caFile) holds no PEM certificate")
            }
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw ParleyClient.ClientError.tlsFailed("cannot set up TLS: \(error)")
        }
    }

    /// The name to send as SNI and verify: nil for an IP address (NIOSSL then checks the
    /// certificate's IP addresses against the address connected to).
    func hostname(connectingTo host: String) -> String? {
        let name = serverName ?? host
        return (try? SocketAddress(ipAddress: name, port: 0)) == nil ? name : nil
    }

    /// What went wrong in a handshake, as the client's error; nil for errors that are not TLS's.
    /// - Parameter expected: the name the certificate had to hold.
    func clientError(for error: any Error, expected: String) -> ParleyClient.ClientError? {
        let trust = caFile.map { "the CA in \($0)" } ?? "the system's trust roots"
        switch error {
        case let failure as NIOSSLExtraError where failure == .failedToValidateHostname:
            return .untrustedCertificate("it is not valid for \(expected)")
        case NIOSSLError.noCertificateToValidate:
            return .untrustedCertificate("the server sent no certificate")
        case NIOSSLError.handshakeFailed(let failure):
            let reasons = Self.reasons(failure)
            if reasons.contains("CERTIFICATE_VERIFY_FAILED") {
                return .untrustedCertificate("it does not verify against \(trust) (signed by another authority, expired or not yet valid)")
            }
            if reasons.contains(where: { ["WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "UNEXPECTED_RECORD", "RECORD_TOO_LARGE", "HTTP_REQUEST"].contains($0) }) {
                return .tlsFailed("the server did not answer in TLS: is this port plain? (\(reasons.joined(separator: ", ")))")
            }
            if reasons.isEmpty || reasons.allSatisfy({ $0.hasPrefix("EOF during") }) {
                return .tlsFailed("the server closed the connection during the handshake")
            }
            return .tlsFailed("the handshake failed (\(reasons.joined(separator: ", ")))")
        case NIOSSLError.uncleanShutdown:
            return .tlsFailed("the server closed the connection without ending TLS")
        default:
            return nil
        }
    }

    /// The reason codes of BoringSSL's error stack (`CERTIFICATE_VERIFY_FAILED`), without file
    /// names and line numbers.
    static func reasons(_ error: BoringSSLError) -> [String] {
        switch error {
        case .sslError(let stack), .unknownError(let stack), .invalidSNIName(let stack), .failedToSetALPN(let stack):
            return stack.map { entry -> String in
                // "Error: 268435590 error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at /…/handshake.cc:303"
                var text = Substring("\(entry)")
                if let start = text.range(of: "error:") {
                    text = text[start.upperBound...]
                    if let at = text.range(of: " at ") { text = text[..<at.lowerBound] }
                    return String(text.split(separator: ":").last ?? text)
                }
                if text.hasPrefix("Error:") { text = text.dropFirst("Error:".count) }
                return text.trimmingCharacters(in: .whitespaces)
            }
        default:
            return ["\(error)"]
        }
    }
}

/// The certificate a TLS server presented, for display and checks.
/// Thread safety: a value type; `Sendable`.
public struct ServerCertificate: Sendable, Hashable {
    /// The subject's common name (CN), or "" when it has none.
    public var subject: String
    /// The issuer's common name.
    public var issuer: String
    /// The serial number in lower-case hexadecimal, as encoded (`1001`).
    public var serial: String
    public var notValidAfter: Date

    init(_ certificate: NIOSSLCertificate) {
        subject = certificate.subjectName.first { $0.type == .commonName }?.value ?? ""
        issuer = certificate.issuerName.first { $0.type == .commonName }?.value ?? ""
        serial = certificate.serialNumber.map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
        notValidAfter = Date(timeIntervalSince1970: TimeInterval(certificate.notValidAfter))
    }
}
