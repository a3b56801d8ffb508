import Foundation
import ParleyWire

/// Encodes a request as a client would.
enum JSONEncoderForFuzzing {
    static func encode(_ envelope: RequestEnvelope) throws -> [UInt8] {
        Array(try JSONEncoder().encode(envelope))
    }
}
