#if canImport(Glibc)
import Glibc
#endif

/// Unix-domain socket addresses, for the control socket, `parley admin` and their tests.
/// Thread safety: stateless.
public enum UnixSocket {
    /// Calls `body` with `path` as a socket address; nil when the path is too long for one.
    public static func withAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// A stream socket connected to `path`, or the `errno` that refused it (`ENAMETOOLONG` for a
    /// path too long for a socket address). The caller closes the descriptor.
    public static func connect(_ path: String) -> Result<Int32, Errno> {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return .failure(Errno(errno)) }
        let connected = withAddress(path) { Glibc.connect(fd, $0, $1) == 0 ? 0 : errno } ?? ENAMETOOLONG
        guard connected == 0 else {
            close(fd)
            return .failure(Errno(connected))
        }
        return .success(fd)
    }

    /// An `errno` value as an error.
    public struct Errno: Error, Equatable {
        public var code: Int32
        init(_ code: Int32) { self.code = code }
        public var description: String { String(cString: strerror(code)) }
    }
}
