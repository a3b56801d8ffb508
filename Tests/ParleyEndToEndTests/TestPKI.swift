import Foundation
import ParleyClient

/// A certificate authority of its own in a temporary folder, made with the system's `openssl`,
/// and the server certificates it issues (EC P-256, valid two days, for `localhost` and
/// `127.0.0.1`): what the TLS tests serve and trust.
/// Thread safety: `Sendable`; immutable (the files are written by the calls that make them).
final class TestPKI: Sendable {
    let directory: String
    /// The authority's common name.
    let name: String
    /// The authority's certificate (PEM): the file a client trusts with `--ca`.
    var caCertificate: String { directory + "/ca.pem" }
    var caKey: String { directory + "/ca.key" }

    static let openssl = "/usr/bin/openssl"
    static var available: Bool { FileManager.default.isExecutableFile(atPath: openssl) }

    /// The extensions of a CA and of a server certificate (no reliance on the system's openssl.cnf).
    /// openssl's configuration, shared with the browser tests: Tests/TLS/test-pki.cnf.
    static let configurationFile = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("TLS/test-pki.cnf").path

    private init(directory: String, name: String) {
        self.directory = directory
        self.name = name
    }

    /// A new authority named `name` in a folder of its own.
    static func make(name: String = "Parley Test CA") async throws -> TestPKI {
        let directory = NSTemporaryDirectory() + "parley-pki-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: configurationFile, toPath: directory + "/openssl.cnf")
        let pki = TestPKI(directory: directory, name: name)
        try await pki.run(["req", "-x509", "-config", "openssl.cnf", "-extensions", "ca", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=\(name)", "-set_serial", "1"])
        return pki
    }

    /// Issues a server certificate with serial number `serial` and common name
    /// `parley-test-<serial in hex>`, with a new key.
    /// - Returns: the paths of the certificate and its key (in the folder, named after the serial).
    @discardableResult
    /// - Parameter namesOnly: a certificate for the name `localhost` only, without 127.0.0.1
    ///   (NIOSSL accepts a certificate whose IP address is the one connected to, whatever name
    ///   was expected).
    func issue(serial: Int, namesOnly: Bool = false) async throws -> (certificate: String, key: String) {
        let stem = "server-" + String(serial, radix: 16)
        try await run(["req", "-new", "-config", "openssl.cnf", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                       "-keyout", stem + ".key", "-out", stem + ".csr", "-subj", "/CN=parley-test-" + String(serial, radix: 16)])
        try await run(["x509", "-req", "-in", stem + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "\(serial)", "-days", "2",
                       "-extfile", "openssl.cnf", "-extensions", namesOnly ? "named" : "server", "-out", stem + ".pem"])
        return (directory + "/" + stem + ".pem", directory + "/" + stem + ".key")
    }

    /// Runs openssl in the folder; throws with its output when it fails.
    @discardableResult
    func run(_ arguments: [String]) async throws -> String {
        let directory = self.directory
        return try await onOwnThread {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.openssl)
            process.arguments = arguments
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
            let output = Pipe(), errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            let complaint = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw TestPKIError(message: "openssl \(arguments.joined(separator: " ")) failed: " + String(decoding: complaint, as: UTF8.self))
            }
            return String(decoding: data, as: UTF8.self)
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

struct TestPKIError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
