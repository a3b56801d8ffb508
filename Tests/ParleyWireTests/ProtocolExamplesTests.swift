import Foundation
import NIOCore
import ParleyCore
import ParleyWire
import Testing

/// Every `C:` and `S:` example line in docs/PROTOCOL.md, read from the file itself.
enum ProtocolExamples {
    static var document: String {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/PROTOCOL.md").path
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    static func lines(_ prefix: String) -> [String] {
        var inFence = false
        var found: [String] = []
        for line in document.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                inFence.toggle()
                continue
            }
            if inFence, line.hasPrefix(prefix) { found.append(String(line.dropFirst(prefix.count))) }
        }
        return found
    }
}

@Suite("docs/PROTOCOL.md examples")
struct ProtocolExamplesTests {
    @Test("the document has examples of both directions")
    func present() {
        #expect(ProtocolExamples.lines("C: ").count >= 10)
        #expect(ProtocolExamples.lines("S: ").count >= 15)
    }

    @Test("every client example parses as a request", arguments: ProtocolExamples.lines("C: "))
    func clientExample(_ json: String) throws {
        var buffer = ByteBufferAllocator().buffer(capacity: json.utf8.count)
        buffer.writeString(json)
        let envelope = try RequestParser.parse(buffer).get()
        #expect(envelope.id != nil, "each example carries an id")
        // The parsed request is what the line says: encoding it again gives the same JSON object.
        let again = try JSONSerialization.jsonObject(with: JSONEncoder().encode(envelope)) as? NSDictionary
        let original = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? NSDictionary
        #expect(again == original)
    }

    @Test("every server example is exactly what the server produces", arguments: ProtocolExamples.lines("S: "))
    func serverExample(_ json: String) throws {
        var buffer = ByteBufferAllocator().buffer(capacity: json.utf8.count)
        buffer.writeString(json)
        let frame = try ServerFrame.decode(buffer)
        #expect(String(decoding: frame.json(), as: UTF8.self) == json)
    }

    @Test("domain events produce the documented frames")
    func events() {
        func json(_ event: Event) -> String { String(decoding: ServerFrame(event: event).json(), as: UTF8.self) }
        let documented = Set(ProtocolExamples.lines("S: "))
        #expect(documented.contains(json(.presence([.init(username: "Bob", online: true), .init(username: "Carol", online: false)], snapshot: false))))
        #expect(documented.contains(json(.onlineCount(2400, everyone: false))))
        #expect(documented.contains(json(.group(name: "Devs", .removed(user: "Bob", by: "Alice")))))
        #expect(documented.contains(json(.invited(group: "Devs", by: "Alice"))))
        #expect(documented.contains(json(.shutdown(message: "the server is shutting down"))))
        #expect(documented.contains(json(.replayEnd(count: 1))))
        #expect(documented.contains(json(.notice(text: "the server restarts at noon", by: "root"))))
        #expect(documented.contains(json(.motd(text: "Welcome to the chat :)"))))
        func frameJSON(_ frame: ServerFrame) -> String { String(decoding: frame.json(), as: UTF8.self) }
        #expect(documented.contains(frameJSON(.error(ParleyError(.kicked, "you were kicked by root: spamming", by: "root", reason: "spamming")))))
        let until = "2026-12-05T10:00:00Z"
        let banned = ParleyError(.banned, "this account is banned until \(until): spam", by: "root", reason: "spam", until: until)
        #expect(documented.contains(frameJSON(.error(banned, id: .int(2)))))
        let address = ParleyError(.banned, "connections from your address are refused: abuse", by: "root", reason: "abuse")
        #expect(documented.contains(frameJSON(.error(address))))
        let stored = StoredMessage(id: 42, time: Timestamp(milliseconds: 1_795_298_002_297), sender: "Alice", room: .general, roomName: "general", text: "hi")
        var fast = ServerFrame.messageFrame(stored, allocator: ByteBufferAllocator())
        fast.moveReaderIndex(forwardBy: 4)
        #expect(documented.contains(String(decoding: fast.readableBytesView, as: UTF8.self)), "the hand-written encoder matches the document")
    }
}
