import ParleyCore
import Testing

@Suite("Names and limits")
struct NamesTests {
    @Test("usernames are 1-32 letters, digits, _ - .", arguments: ["a", "Alice", "bob_2", "x-y.z", String(repeating: "a", count: 32)])
    func valid(_ name: String) throws {
        #expect(Names.isValid(name))
        try Names.validateUsername(name)
    }

    @Test("other names are refused with INVALID_USERNAME", arguments: ["", "has space", "émile", "a/b", String(repeating: "a", count: 33), "semi;colon"])
    func invalid(_ name: String) {
        #expect(!Names.isValid(name))
        #expect(throws: ParleyError(.invalidUsername, "usernames are 1-32 characters: letters, digits, '_', '-' and '.'")) {
            try Names.validateUsername(name)
        }
    }

    @Test("'general' cannot be a group name in any case")
    func generalReserved() {
        #expect(throws: ParleyError.self) { try Names.validateGroupName("General") }
        #expect(throws: Never.self) { try Names.validateGroupName("generalists") }
    }

    @Test("a taken guest name gets a free numeric suffix, stays within 32 characters, and the next guest does not re-walk the suffixes")
    func guestNames() {
        var taken: Set<String> = ["bob", "bob2", String(repeating: "x", count: 32)]
        var namer = GuestNamer()
        #expect(namer.name(for: "carol", isTaken: taken.contains) == "carol")
        #expect(namer.name(for: "Bob", isTaken: taken.contains) == "Bob3")
        taken.insert("bob3")
        var checks: [String] = []
        let next = namer.name(for: "bob") { key in checks.append(key); return taken.contains(key) }
        #expect(next == "bob4")
        #expect(checks == ["bob", "bob4"], "starts at the remembered suffix")
        let long = namer.name(for: String(repeating: "x", count: 32), isTaken: taken.contains)
        #expect(long == String(repeating: "x", count: 31) + "2")
    }

    @Test("message text must be non-blank and at most the limit")
    func text() throws {
        var limits = Limits()
        limits.maxMessageLength = 5
        try limits.validateText("hello")
        #expect(throws: ParleyError(.messageTooLong, "a message is at most 5 characters")) { try limits.validateText("hello!") }
        #expect(throws: ParleyError(.emptyMessage, "a message cannot be empty")) { try limits.validateText(" \n ") }
    }

    @Test("text may hold newlines and tabs but no other control character, and is capped in bytes too")
    func controlCharacters() throws {
        let limits = Limits()
        try limits.validateText("two\nlines\tand a tab")
        for bad in ["a\u{0}b", "\u{0}secret", "bell\u{7}", "esc\u{1B}[31m", "del\u{7F}", "cr\r"] {
            #expect(throws: ParleyError(.invalidText, "a message may not contain control characters other than newline and tab")) {
                try limits.validateText(bad)
            }
        }
        // One character with 30,000 combining marks is one character but 60,001 bytes.
        let zalgo = "e" + String(repeating: "\u{0301}", count: 30_000)
        #expect(zalgo.count == 1)
        #expect(throws: ParleyError(.messageTooLong, "a message is at most \(limits.maxTextBytes) bytes of UTF-8")) { try limits.validateText(zalgo) }
    }

    @Test("passwords need 8 characters and at most 72 bytes")
    func passwords() throws {
        let limits = Limits()
        try limits.validatePassword("12345678")
        #expect(throws: ParleyError.self) { try limits.validatePassword("1234567") }
        #expect(throws: ParleyError.self) { try limits.validatePassword(String(repeating: "é", count: 40)) }
    }

    @Test("timestamps render as exact UTC ISO 8601")
    func timestamps() {
        #expect(Timestamp(milliseconds: 0).iso8601 == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp(milliseconds: 951_782_400_123).iso8601 == "2000-02-29T00:00:00.123Z")
        #expect(Timestamp(milliseconds: 1_795_304_096_789).iso8601 == "2026-11-21T23:34:56.789Z")
    }

    @Test("private rooms are the same whichever side names them")
    func directRooms() {
        #expect(Room.direct(between: "Bob", and: "alice") == Room.direct(between: "alice", and: "BOB"))
        #expect(Room.direct(between: "bob", and: "alice").storageKey == "d:alice:bob")
    }
}
