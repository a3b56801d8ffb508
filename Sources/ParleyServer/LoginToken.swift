import Crypto
import Foundation

/// Login tokens: 32 random bytes, base64url, handed to a client that asked to be remembered, so
/// it can log in again (after a dropped connection or a server restart) without its password
/// and without a bcrypt check. Only the SHA-256 of a token is stored; a token is random enough
/// that a fast hash is safe. A token unused for ``maxAge`` is refused and deleted; `logout`
/// deletes the one the session used; each account keeps at most ``keepPerUser``.
/// Thread safety: stateless.
public enum LoginToken {
    /// Milliseconds a token lives without being used: 30 days.
    public static let maxAge: Int64 = 30 * 86_400_000
    public static let keepPerUser = 20

    /// A new token, from the system's secure random generator.
    public static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// What is stored for `token`: its SHA-256, in hex.
    public static func hash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
