import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOSSL
import ParleyCore

/// The server's current TLS certificate, ready for new connections: one `NIOSSLContext` made
/// from the PEM files named by ``ServerConfiguration/tlsCertificate`` and
/// ``ServerConfiguration/tlsKey``, shared by the native and HTTP listeners.
///
/// Every accepted connection takes the context that is current at that moment (``context``) and
/// keeps it for its whole life; ``reload()`` reads the files again and swaps the context for the
/// connections that come after, so a renewed certificate takes effect without dropping anyone. A
/// reload whose files are bad throws and leaves the current context in place.
/// Thread safety: `Sendable`; the current context is behind a lock (taken once per accepted
/// connection, for a pointer copy), and loading happens outside it.
final class TLSContextBox: Sendable {
    let certificatePath: String
    let keyPath: String
    private let current: Locked<Loaded>

    /// A context and what it was made from.
    struct Loaded: Sendable {
        var context: NIOSSLContext
        var certificate: TLSCertificateSummary
    }

    /// The largest certificate or key file read (a chain is a few KB).
    static let maxFileSize = 1 << 20
    /// How long a closing connection waits for the peer's `close_notify` before closing anyway.
    static let shutdownTimeout = TimeAmount.seconds(2)

    /// Loads the files.
    /// - Throws: ``TLSSetupError`` saying what is wrong with which file.
    init(certificate: String, key: String) throws {
        certificatePath = certificate
        keyPath = key
        current = Locked(try TLSContextBox.load(certificate: certificate, key: key))
    }

    /// The box for `configuration`, or nil when it names no certificate.
    /// - Throws: ``TLSSetupError`` when only one of certificate and key is given, or the files are bad.
    static func make(_ configuration: ServerConfiguration) throws -> TLSContextBox? {
        let certificate = configuration.tlsCertificate.flatMap { $0.isEmpty ? nil : $0 }
        let key = configuration.tlsKey.flatMap { $0.isEmpty ? nil : $0 }
        switch (certificate, key) {
        case (nil, nil):
            return nil
        case (let certificate?, let key?):
            return try TLSContextBox(certificate: certificate, key: key)
        case (_?, nil):
            throw TLSSetupError("a TLS certificate needs its private key: give --tls-key with --tls-cert")
        case (nil, _?):
            throw TLSSetupError("a TLS private key needs its certificate: give --tls-cert with --tls-key")
        }
    }

    /// The context for a connection accepted now.
    var context: NIOSSLContext { current.withLock { $0.context } }

    /// What the current certificate is.
    var certificate: TLSCertificateSummary { current.withLock { $0.certificate } }

    /// Reads the files again and, if they make a usable context, puts it in place for new
    /// connections (open ones keep theirs).
    /// - Returns: what the new certificate is.
    /// - Throws: ``TLSSetupError``; the current context then stays.
    @discardableResult
    func reload() throws -> TLSCertificateSummary {
        let loaded = try TLSContextBox.load(certificate: certificatePath, key: keyPath)
        current.withLock { $0 = loaded }
        return loaded.certificate
    }

    /// Reads and checks the certificate chain and its key, and makes a server context of them.
    /// Blocking file I/O: call it off the event loops (start-up, a reload).
    static func load(certificate certificatePath: String, key keyPath: String) throws -> Loaded {
        let certificateBytes = try contents(of: certificatePath, what: "TLS certificate file")
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(certificateBytes)
        } catch {
            throw TLSSetupError("the TLS certificate file \(certificatePath) holds no PEM certificate "
                + "(a \"-----BEGIN CERTIFICATE-----\" block; the server's own certificate first, then its chain)")
        }
        guard let leaf = chain.first else {
            throw TLSSetupError("the TLS certificate file \(certificatePath) holds no PEM certificate")
        }
        let keyBytes = try contents(of: keyPath, what: "TLS private key file")
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(bytes: keyBytes, format: .pem)
        } catch {
            if String(decoding: keyBytes, as: UTF8.self).contains("ENCRYPTED") {
                throw TLSSetupError("the TLS private key in \(keyPath) is encrypted: Parley needs it unencrypted "
                    + "(readable by the server's user only; `openssl pkey -in \(keyPath) -out plain.pem` decrypts it)")
            }
            throw TLSSetupError("the TLS private key file \(keyPath) holds no PEM private key (a \"-----BEGIN ... PRIVATE KEY-----\" block)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { NIOSSLCertificateSource.certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.shutdownTimeout = shutdownTimeout
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch NIOSSLError.failedToLoadPrivateKey {
            // BoringSSL checks the key against the chain's first certificate.
            throw TLSSetupError("the private key in \(keyPath) does not belong to the certificate in \(certificatePath) "
                + "(the first certificate in the file must be the server's own)")
        } catch {
            throw TLSSetupError("cannot use the TLS certificate \(certificatePath) with the key \(keyPath): \(TLSFailure.describe(error))")
        }
        return Loaded(context: context, certificate: TLSCertificateSummary(leaf, chainLength: chain.count))
    }

    /// The bytes of a file of at most ``maxFileSize`` bytes.
    static func contents(of path: String, what: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TLSSetupError("cannot read the \(what) \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw TLSSetupError("cannot read the \(what) \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { return bytes }
            bytes += chunk[..<n]
            guard bytes.count <= maxFileSize else {
                throw TLSSetupError("the \(what) \(path) is over \(maxFileSize / 1024) KiB: not a PEM certificate or key")
            }
        }
    }
}

/// Why TLS could not be set up: a file missing or unreadable, not PEM, an encrypted key, a key
/// that does not belong to the certificate. `description` names the file and is meant for the
/// operator as it is.
/// Thread safety: a value type; `Sendable`.
public struct TLSSetupError: Error, Sendable, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// What a certificate is, for logs and for `parley admin reload`: its subject's common name,
/// the names it is valid for, its serial number and when it expires.
/// Thread safety: a value type; `Sendable`.
public struct TLSCertificateSummary: Sendable, Hashable, CustomStringConvertible {
    /// The subject's common name (CN), or "" when it has none.
    public var subject: String
    /// DNS names and IP addresses of its subject alternative names.
    public var names: [String]
    /// The serial number in lower-case hexadecimal, as it is encoded (`1001`).
    public var serial: String
    public var notValidBefore: Date
    public var notValidAfter: Date
    /// Certificates in the file: the server's own and its chain.
    public var chainLength: Int

    init(_ certificate: NIOSSLCertificate, chainLength: Int) {
        subject = certificate.subjectName.first { $0.type == .commonName }?.value ?? ""
        names = certificate._subjectAlternativeNames().compactMap { name -> String? in
            switch name.nameType {
            case .dnsName: return String(decoding: name.contents, as: UTF8.self)
            case .ipAddress: return TLSCertificateSummary.address(Array(name.contents))
            default: return nil
            }
        }
        serial = certificate.serialNumber.map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
        notValidBefore = Date(timeIntervalSince1970: TimeInterval(certificate.notValidBefore))
        notValidAfter = Date(timeIntervalSince1970: TimeInterval(certificate.notValidAfter))
        self.chainLength = chainLength
    }

    /// An IPv4 or IPv6 address from its 4 or 16 bytes.
    static func address(_ bytes: [UInt8]) -> String? {
        let family: Int32
        switch bytes.count {
        case 4: family = AF_INET
        case 16: family = AF_INET6
        default: return nil
        }
        var text = [CChar](repeating: 0, count: 64)
        let written = bytes.withUnsafeBytes { raw in
            text.withUnsafeMutableBufferPointer { inet_ntop(family, raw.baseAddress, $0.baseAddress, socklen_t($0.count)) != nil }
        }
        guard written else { return nil }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether it is valid at `date`.
    public func isValid(at date: Date = Date()) -> Bool { notValidBefore <= date && date <= notValidAfter }

    public var description: String {
        let expiry = ISO8601DateFormatter().string(from: notValidAfter)
        let list = names.isEmpty ? "" : " for \(names.joined(separator: ", "))"
        return "\(subject.isEmpty ? "(no common name)" : subject)\(list), serial \(serial), valid until \(expiry)"
            + (chainLength > 1 ? ", with \(chainLength - 1) chain certificate\(chainLength == 2 ? "" : "s")" : "")
    }

    /// For log lines.
    var metadata: Logger.Metadata {
        [
            "subject": "\(subject)", "names": "\(names.joined(separator: ","))", "serial": "\(serial)",
            "expires": "\(ISO8601DateFormatter().string(from: notValidAfter))", "chain": "\(chainLength)",
        ]
    }
}

extension TLSCertificateSummary {
    /// What `parley admin reload --json` answers.
    struct ReloadReply: Encodable {
        var reloaded = true
        var subject: String
        var names: [String]
        var serial: String
        var notValidAfter: String
    }

    var reloadReply: ReloadReply {
        ReloadReply(subject: subject, names: names, serial: serial, notValidAfter: ISO8601DateFormatter().string(from: notValidAfter))
    }
}
