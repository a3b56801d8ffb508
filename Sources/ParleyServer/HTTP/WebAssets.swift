import CompressNIO
import Crypto
import Foundation
import NIOCore

/// The browser client's files (package resources under `Web/`), read once at start-up and kept
/// in memory with their gzip form and an ETag.
/// Thread safety: immutable after `init`; `Sendable`.
struct WebAssets: Sendable {
    struct Asset: Sendable {
        let contentType: String
        let body: ByteBuffer
        /// The body gzipped, when that is smaller.
        let gzipped: ByteBuffer?
        /// A strong validator: a hash of the body, quoted.
        let etag: String
    }

    let assets: [String: Asset]

    /// Loads every file of the resources' `Web` folder.
    /// - Throws: when the folder cannot be read.
    init(directory: URL? = Bundle.module.url(forResource: "Web", withExtension: nil)) throws {
        guard let directory else { throw CocoaError(.fileNoSuchFile) }
        var assets: [String: Asset] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) where !name.hasPrefix(".") {
            let data = try Data(contentsOf: directory.appendingPathComponent(name))
            let body = ByteBuffer(bytes: data)
            var source = body
            let gzipped = try? source.compress(with: .gzip())
            let digest = SHA256.hash(data: data).prefix(12).map { String(format: "%02x", $0) }.joined()
            assets["/" + name] = Asset(
                contentType: Self.contentType(of: name), body: body,
                gzipped: gzipped.flatMap { $0.readableBytes < body.readableBytes ? $0 : nil },
                etag: "\"\(digest)\"")
        }
        assets["/"] = assets["/index.html"]
        self.assets = assets
    }

    static func contentType(of name: String) -> String {
        switch name.split(separator: ".").last {
        case "html": "text/html; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        case "json", "webmanifest": "application/manifest+json"
        default: "application/octet-stream"
        }
    }
}
