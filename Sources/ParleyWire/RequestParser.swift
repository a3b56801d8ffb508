import Foundation
import NIOCore
import ParleyCore

/// Turns a frame's payload into a ``RequestEnvelope``, or into a precise error that names the
/// problem: invalid UTF-8, invalid JSON, not an object, unknown `type`, a missing or mistyped field.
/// Thread safety: stateless; safe from any thread.
public enum RequestParser {
    /// A request that could not be understood, with the `id` to echo when one could be read.
    public struct Failure: Error, Sendable, Hashable {
        public var id: RequestID?
        public var error: ParleyError
    }

    private struct IDProbe: Decodable { var id: RequestID? }

    public static func parse(_ payload: ByteBuffer) -> Result<RequestEnvelope, Failure> {
        let bytes = payload.readableBytesView
        guard String(validating: bytes, as: UTF8.self) != nil else {
            return .failure(Failure(id: nil, error: ParleyError(.badUTF8, "the frame is not valid UTF-8")))
        }
        if let offset = rawControlInString(bytes) {
            return .failure(Failure(id: nil, error: ParleyError(
                .badJSON, "the frame is not valid JSON: a control character (byte \(offset)) must be escaped inside a string")))
        }
        let data = Data(bytes)
        let decoder = JSONDecoder()
        do {
            return .success(try decoder.decode(RequestEnvelope.self, from: data))
        } catch {
            let id = (try? decoder.decode(IDProbe.self, from: data))?.id
            return .failure(Failure(id: id, error: describe(error)))
        }
    }

    /// The offset of the first raw control character (U+0000–U+001F) inside a JSON string, which
    /// RFC 8259 forbids and Foundation's decoder lets through in strings it skips.
    static func rawControlInString(_ bytes: ByteBufferView) -> Int? {
        var inString = false
        var escaped = false
        for (offset, byte) in bytes.enumerated() {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                } else if byte < 0x20 {
                    return offset
                }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            }
        }
        return nil
    }

    static func describe(_ error: any Error) -> ParleyError {
        switch error {
        case let unknown as RequestEnvelope.UnknownType:
            return ParleyError(.unknownType, "unknown request type '\(unknown.type)'")
        case let invalid as RequestEnvelope.Invalid:
            return ParleyError(.badRequest, invalid.message)
        case let decoding as DecodingError:
            switch decoding {
            case .dataCorrupted(let context) where context.codingPath.isEmpty:
                return ParleyError(.badJSON, "the frame is not valid JSON", details: context.debugDescription)
            case .typeMismatch(_, let context) where context.codingPath.isEmpty:
                return ParleyError(.badRequest, "a frame must be a JSON object")
            case .keyNotFound(let key, _):
                return ParleyError(.badRequest, "missing field '\(key.stringValue)'")
            case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
                let field = context.codingPath.last?.stringValue ?? "?"
                return ParleyError(.badRequest, "field '\(field)' must be \(describe(type))")
            case .dataCorrupted(let context):
                let field = context.codingPath.last?.stringValue ?? "?"
                return ParleyError(.badRequest, "field '\(field)' has an invalid value")
            @unknown default:
                return ParleyError(.badRequest, "the request could not be read")
            }
        default:
            return ParleyError(.badRequest, "the request could not be read")
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type: return "an integer"
        case is Bool.Type: return "true or false"
        case is RequestID.Type: return "a string or an integer"
        case is [String].Type: return "a list of strings"
        default: return "of another type"
        }
    }
}
