#if canImport(Glibc)
import Glibc
#endif

/// An IP address range in CIDR form (`203.0.113.0/24`, `2001:db8::/32`; one address without a
/// prefix), for address bans. An IPv4-mapped IPv6 address (`::ffff:203.0.113.7`) matches the
/// IPv4 range it maps to.
/// Thread safety: a value type; `Sendable`.
struct AddressRange: Sendable, Hashable, CustomStringConvertible {
    /// 4 or 16 bytes, with the bits past the prefix cleared.
    let bytes: [UInt8]
    let prefix: Int

    /// - Returns: nil when `text` is not an address or a CIDR range.
    init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = Self.parse(String(parts[0])) else { return nil }
        let bits = address.count * 8
        let prefix: Int
        if parts.count == 2 {
            guard let n = Int(parts[1]), (0...bits).contains(n) else { return nil }
            prefix = n
        } else {
            prefix = bits
        }
        self.bytes = Self.masked(address, prefix: prefix)
        self.prefix = prefix
    }

    /// The range's canonical text: the network address and the prefix.
    var description: String {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        let address = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return prefix == bytes.count * 8 ? address : "\(address)/\(prefix)"
    }

    /// Whether the address (as text) is in the range.
    func contains(_ text: String) -> Bool {
        guard var address = Self.parse(text) else { return false }
        if address.count == 16, bytes.count == 4, address[0..<10].allSatisfy({ $0 == 0 }), address[10] == 0xFF, address[11] == 0xFF {
            address = Array(address[12...])
        }
        guard address.count == bytes.count else { return false }
        return Self.masked(address, prefix: prefix) == bytes
    }

    private static func parse(_ text: String) -> [UInt8]? {
        var v4 = [UInt8](repeating: 0, count: 4)
        if inet_pton(AF_INET, text, &v4) == 1 { return v4 }
        var v6 = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET6, text, &v6) == 1 { return v6 }
        return nil
    }

    private static func masked(_ address: [UInt8], prefix: Int) -> [UInt8] {
        address.enumerated().map { index, byte in
            let keep = max(0, min(8, prefix - index * 8))
            return keep == 8 ? byte : byte & UInt8(truncatingIfNeeded: 0xFF << (8 - keep))
        }
    }
}
