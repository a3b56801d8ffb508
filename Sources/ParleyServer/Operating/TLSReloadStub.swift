extension ParleyServer {
    /// Placeholder until TLS lands.
    public func reloadTLS() throws {
        throw AdminError("TLS is not configured")
    }
}
