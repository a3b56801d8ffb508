import ParleyChat
import ParleyClient
import ParleyCore
import ParleyWire
import Testing

@Suite("Chat client: commands, line editing, keys, screen")
struct ChatTests {
    @Test("the classroom commands keep their meaning; wrong ones get a one-line explanation")
    func commands() throws {
        #expect(try ChatCommand.parse("/pm bob hi there") == .privateMessage(user: "bob", text: "hi there"))
        #expect(try ChatCommand.parse("/gc team  spaced  text") == .groupMessage(group: "team", text: "spaced  text"))
        #expect(try ChatCommand.parse("/cg team") == .createGroup("team"))
        #expect(try ChatCommand.parse("/jg team") == .joinGroup("team"))
        #expect(try ChatCommand.parse("/lg team") == .leaveGroup("team"))
        #expect(try ChatCommand.parse("/listg") == .myGroups)
        #expect(try ChatCommand.parse("/mode team invite-only") == .mode(group: "team", inviteOnly: true))
        #expect(try ChatCommand.parse("/history 5") == .history(5))
        #expect(try ChatCommand.parse("hello /world") == .say("hello /world"))
        #expect(try ChatCommand.parse("//slash") == .say("/slash"))
        #expect(try ChatCommand.parse("   ") == nil)
        #expect(throws: ChatCommand.CommandError(description: "usage: /pm <user> <message>")) { try ChatCommand.parse("/pm bob") }
        #expect(throws: ChatCommand.CommandError(description: "unknown command /frobnicate; /help lists the commands")) {
            try ChatCommand.parse("/frobnicate now")
        }
        #expect(throws: ChatCommand.CommandError.self) { try ChatCommand.parse("/mode team sometimes") }
        #expect(throws: ChatCommand.CommandError.self) { try ChatCommand.parse("/history 0") }
        #expect(Array(ChatCommand.names.prefix(6)) == ["pm", "gc", "cg", "jg", "lg", "listg"], "/help lists the classroom set first")
    }

    @Test("account commands: /password (asked for, or both given), /logout [all], /sessions, /end <id>")
    func accountCommands() throws {
        #expect(try ChatCommand.parse("/password") == .changePassword(current: nil, new: nil))
        #expect(try ChatCommand.parse("/password old-secret new-secret") == .changePassword(current: "old-secret", new: "new-secret"))
        #expect(throws: ChatCommand.CommandError(description: "usage: /password [<current> <new>]")) { try ChatCommand.parse("/password only-one") }
        #expect(throws: ChatCommand.CommandError(description: "usage: /password [<current> <new>]")) { try ChatCommand.parse("/passwd a b c") }
        #expect(try ChatCommand.parse("/logout") == .logout(everywhere: false))
        #expect(try ChatCommand.parse("/logout all") == .logout(everywhere: true))
        #expect(try ChatCommand.parse("/LOGOUT All") == .logout(everywhere: true))
        #expect(throws: ChatCommand.CommandError(description: "usage: /logout [all]")) { try ChatCommand.parse("/logout now") }
        #expect(try ChatCommand.parse("/sessions") == .sessions)
        #expect(throws: ChatCommand.CommandError.self) { try ChatCommand.parse("/sessions all") }
        #expect(try ChatCommand.parse("/end 3") == .endSession(3))
        #expect(throws: ChatCommand.CommandError(description: "usage: /end <id>")) { try ChatCommand.parse("/end three") }
        #expect(throws: ChatCommand.CommandError(description: "usage: /end <id>")) { try ChatCommand.parse("/end") }
        #expect(throws: ChatCommand.CommandError(description: "usage: /pm <user> <message>")) { try ChatCommand.parse("/msg bob") }
        for name in ["password", "logout", "sessions", "end"] { #expect(ChatCommand.names.contains(name), "/help and Tab know /\(name)") }
    }

    @Test("/sessions lists id, transport, address and since, marking this session; a logout by the server is shown in words")
    func sessionsAndLoggedOut() {
        let lines = ChatFormat.sessionLines([
            SessionInfo(session: 12, transport: "native", address: "127.0.0.1:50000", since: "2026-12-04T09:30:00Z", current: true),
            SessionInfo(session: 7, transport: "websocket", address: "10.0.0.2:443", since: "2026-12-03T18:05:00.250Z", current: false),
        ])
        #expect(lines.count == 3)
        #expect(lines[1].hasPrefix("  #12  native     127.0.0.1:50000  since "), "\(lines)")
        #expect(lines[1].hasSuffix("(this one)"))
        #expect(lines[1].contains(ChatFormat.localDateTime("2026-12-04T09:30:00Z")))
        #expect(lines[2].hasPrefix("  #7   websocket  10.0.0.2:443     since "), "\(lines)")
        #expect(!lines[2].contains("this one"))
        #expect(ChatFormat.localDateTime("2026-12-03T18:05:00.250Z").count == 16, "yyyy-MM-dd HH:mm")
        #expect(ChatFormat.sessionLines([]) == ["no sessions"])
        let error = ParleyError(ChatFormat.loggedOut, "your password was changed")
        #expect(ChatFormat.words(for: error) == "logged out: your password was changed")
    }

    /// The texts of event lines.
    static func texts(_ lines: [(ChatScreen.Line, ChatScreen.Conversation?)]?) -> [String]? {
        lines?.map { $0.0.text }
    }

    @Test("an operator's notice and the message of the day are system lines set apart from chat, in no conversation; the message of the day once per text, not again at a reconnect's login")
    func noticeAndMotd() {
        // (Mutating calls are made outside #expect, whose expansion may copy what it evaluates.)
        var events = ChatEvents(me: "alice")
        let motd = events.lines(for: .motd(text: "Welcome to the chat :)"))
        #expect(motd.map { $0.0 } == [ChatScreen.Line(style: .notice, text: "*** Welcome to the chat :)", indent: 4)])
        #expect(motd.allSatisfy { $0.1 == nil }, "counted as unread nowhere")
        let again = events.lines(for: .motd(text: "Welcome to the chat :)"))
        #expect(again.isEmpty, "a reconnect's login does not repeat it")
        let empty = events.lines(for: .motd(text: ""))
        #expect(empty.isEmpty, "an empty one is not shown")
        let changed = events.lines(for: .motd(text: "New rules: be kind"))
        #expect(Self.texts(changed) == ["*** New rules: be kind"], "a changed one is")

        let notice = events.lines(for: .notice(text: "restart at noon\nback by one", by: "root"))
        #expect(notice.count == 1)
        #expect(notice.first?.1 == nil)
        #expect(notice.first?.0.style == .notice)
        #expect(Self.texts(notice) == ["*** notice from root: restart at noon\nback by one"])
        let pad = String(repeating: " ", count: "*** notice from root: ".count)
        #expect(notice.map { ChatFormat.plainLines($0.0) } == [["*** notice from root: restart at noon", pad + "back by one"]],
                "line mode: each line under the text")
        let anonymous = events.lines(for: .notice(text: "hi", by: ""))
        #expect(Self.texts(anonymous) == ["*** notice: hi"], "no name, no 'from'")
        #expect(events.ended == nil, "notices end nothing")

        // What an operator types is shown as text: escapes do not reach the terminal.
        let hostile = events.lines(for: .notice(text: "\u{1B}[2Jgotcha\u{7}", by: "root"))
        #expect(hostile.map { ChatFormat.plainLines($0.0) } == [["*** notice from root: ^[[2Jgotcha\\u{7}"]])
        let hostileMotd = events.lines(for: .motd(text: "\u{1B}]0;owned\u{7}hello"))
        var screen = ChatScreen(server: "h")
        for (line, conversation) in hostile + hostileMotd { screen.append(line, in: conversation) }
        let cells = screen.render(width: 60, height: 5).rows
        let rows = cells.map { row in String(row.filter { !$0.continuation }.map(\.character)) }
        #expect(rows[1].hasPrefix("*** notice from root: ^[[2Jgotcha\\u{7}"), "\(rows)")
        #expect(rows[2].hasPrefix("*** ^[]0;owned\\u{7}hello"), "\(rows)")
        #expect(!rows.joined().contains("\u{1B}") && !rows.joined().contains("\u{7}"))
        #expect(cells[1].first?.style == .notice)
    }

    @Test("KICKED: 'kicked by' the operator and why, set apart; the session has ended for good, so the client does not reconnect")
    func kicked() {
        var events = ChatEvents(me: "alice")
        let kick = ParleyError(.kicked, "you were kicked by root: spamming", by: "root", reason: "spamming")
        let lines = events.lines(for: .error(kick))
        #expect(Self.texts(lines) == ["*** kicked by root: spamming"])
        #expect(lines.allSatisfy { $0.0.style == .error && $0.1 == nil })
        #expect(events.ended == ChatEvents.Ending(kind: .kicked, text: "kicked by root: spamming"))
        #expect(events.ended?.status == "kicked")
        // Without a reason, or with nothing but the message.
        #expect(ChatFormat.words(for: ParleyError(.kicked, "you were kicked by root", by: "root")) == "kicked by root")
        #expect(ChatFormat.words(for: ParleyError(.kicked, "you were kicked")) == "you were kicked")
        // A reason with control characters is escaped wherever it is shown.
        var hostile = ChatEvents(me: "alice")
        let escaped = hostile.lines(for: .error(ParleyError(.kicked, "", by: "root", reason: "bye\u{1B}[2J")))
        #expect(escaped.map { ChatFormat.plainLines($0.0) } == [["*** kicked by root: bye^[[2J"]])
        // Other errors end nothing; LOGGED_OUT ends the session as before, in the same words.
        var other = ChatEvents(me: "alice")
        let slow = other.lines(for: .error(ParleyError(.slowConsumer, "you were too slow")))
        #expect(Self.texts(slow) == ["you were too slow"])
        #expect(other.ended == nil)
        let loggedOut = other.lines(for: .error(ParleyError(.loggedOut, "your password was changed")))
        #expect(Self.texts(loggedOut) == ["logged out: your password was changed"])
        #expect(other.ended == ChatEvents.Ending(kind: .loggedOut, text: "logged out: your password was changed"))
    }

    @Test("BANNED: who, why and until when (in local time), or without end; a refused address as the server says it; live, and when logging in again, where it stops the retries")
    func banned() {
        let until = "2026-12-05T10:00:00Z"
        let local = ChatFormat.localDateTime(until)
        #expect(local.count == 16 && local != until, "yyyy-MM-dd HH:mm in local time: \(local)")
        let ban = ParleyError(.banned, "this account is banned until \(until): spam", by: "root", reason: "spam", until: until)
        #expect(ChatFormat.words(for: ban) == "banned by root until \(local): spam")
        #expect(ChatFormat.words(for: ParleyError(.banned, "this account is banned: spam", by: "root", reason: "spam")) == "banned by root: spam")
        #expect(ChatFormat.words(for: ParleyError(.banned, "connections from your address are refused")) == "connections from your address are refused")

        // A live session of an account banned just now.
        var live = ChatEvents(me: "alice")
        let shown = live.lines(for: .error(ban))
        #expect(Self.texts(shown) == ["*** banned by root until \(local): spam"])
        #expect(live.ended == ChatEvents.Ending(kind: .banned, text: "banned by root until \(local): spam"))
        #expect(live.ended?.status == "banned")

        // Logging in again after a dropped connection: a ban or a password that no longer works
        // ends the session; anything else is worth another try.
        var again = ChatEvents(me: "alice")
        let timedOut = again.refused(ParleyClient.ClientError.timedOut("hello"))
        let busy = again.refused(ParleyError(.serverBusy, "busy"))
        let full = again.refused(ParleyError(.tooManyConnections, "too many"))
        #expect(Self.texts(timedOut) == nil && Self.texts(busy) == nil && Self.texts(full) == nil, "worth another try")
        #expect(again.ended == nil)
        let refused = again.refused(ban)
        #expect(Self.texts(refused) == ["*** banned by root until \(local): spam"])
        #expect(again.ended?.kind == .banned)
        var address = ChatEvents(me: "alice")
        let addressRefused = address.refused(ParleyError(.banned, "connections from your address are refused"))
        #expect(Self.texts(addressRefused) == ["*** connections from your address are refused"])
        var password = ChatEvents(me: "alice")
        let wrong = password.refused(ParleyError(.invalidCredentials, "wrong"))
        #expect(Self.texts(wrong) == ["*** could not log in again: Wrong username or password."])
        #expect(password.ended?.kind == .loggedOut)
    }

    @Test("line editing: cursor moves, word jumps, deletes, Ctrl-U, Ctrl-W, history")
    func editing() {
        var e = LineEditor()
        e.insert("hello world")
        e.wordLeft()
        #expect(e.cursor == 6)
        e.insert("big ")
        #expect(e.line == "hello big world")
        e.home(); e.delete()
        #expect(e.line == "ello big world")
        e.end(); e.backspace()
        #expect(e.line == "ello big worl")
        e.killWord()
        #expect(e.line == "ello big ")
        e.left(); e.killToStart()
        #expect(e.line == " " && e.cursor == 0)
        e.end()
        #expect(e.submit() == " ")
        e.insert("first"); _ = e.submit()
        e.insert("second"); _ = e.submit()
        e.insert("draft")
        e.historyUp()
        #expect(e.line == "second")
        e.historyUp()
        #expect(e.line == "first")
        e.historyDown(); e.historyDown()
        #expect(e.line == "draft", "going past the newest entry brings back what was being typed")
    }

    @Test("Tab completes commands after a slash and names elsewhere; several matches complete their common prefix")
    func completion() {
        var e = LineEditor()
        e.insert("/li")
        #expect(e.complete(commands: ChatCommand.names, names: []) == ["listg"])
        #expect(e.line == "/listg ")
        var f = LineEditor()
        f.insert("/pm ali")
        f.complete(commands: ChatCommand.names, names: ["Alice", "Alicia", "bob"])
        #expect(f.line == "/pm Alic")
        f.insert("e")
        f.complete(commands: ChatCommand.names, names: ["Alice", "Alicia", "bob"])
        #expect(f.line == "/pm Alice ")
    }

    @Test("keys: characters, control keys and escape sequences, also split across reads")
    func keys() {
        var d = KeyDecoder()
        #expect(d.feed(Array("hé".utf8)) == [.character("h"), .character("é")])
        #expect(d.feed([0x1B, 0x5B]) == [], "an incomplete sequence waits")
        #expect(d.feed([0x44]) == [.left])
        #expect(d.feed([0x1B, 0x5B, 0x35, 0x7E, 0x1B, 0x5B, 0x36, 0x7E]) == [.pageUp, .pageDown])
        #expect(d.feed([0x1B, 0x5B, 0x31, 0x3B, 0x35, 0x43]) == [.wordRight])
        #expect(d.feed([0x0D, 0x7F, 0x09, 0x15, 0x17, 0x03]) == [.enter, .backspace, .tab, .control("u"), .control("w"), .control("c")])
        #expect(d.feed(Array("日本".utf8).prefix(4)) == [.character("日")])
        #expect(d.feed(Array("日本".utf8).dropFirst(4)) == [.character("本")])
    }

    @Test("the screen: messages above, status, input below; wide characters and long lines wrap; others' control characters are escaped")
    func screen() {
        var s = ChatScreen(server: "host:1")
        s.username = "alice"
        s.connection = "connected"
        s.append(.init(style: .general, text: "12:00 bob: " + String(repeating: "x", count: 25)))
        s.append(.init(style: .general, text: "12:01 bob: 日本語テキスト"))
        s.append(.init(style: .general, text: "12:02 bob: \u{1B}[2Jboom"))
        s.editor.insert("draft")
        let (rows, cursor) = s.render(width: 20, height: 8)
        let text = rows.map { row in String(row.filter { !$0.continuation }.map(\.character)) }
        #expect(rows.allSatisfy { $0.count == 20 })
        #expect(text[0].allSatisfy { $0 == " " }, "the pane fills from the bottom")
        #expect(text[1] == "12:00 bob: xxxxxxxxx")
        #expect(text[2].hasPrefix("xxxxxxxxxxxxxxxx"))
        #expect(text[3].hasPrefix("12:01 bob: 日本語テ"), "a wide character that does not fit goes to the next row: \(text[3])")
        #expect(text[4].hasPrefix("キスト"))
        #expect(text[5].hasPrefix("12:02 bob: ^[[2Jboom"))
        #expect(text[6] == "[connected] [to: gen", "the status line, cut at the width")
        #expect(text[7].hasPrefix("[general] draft"))
        #expect(cursor.row == 7 && cursor.column == 15)
    }

    @Test("a message of several lines shows as several lines, each under the message text, on the screen and in line mode; other control characters stay escaped")
    func multiLineMessage() {
        let time = "2026-12-04T12:00:00.000Z"
        let message = WireMessage(messageId: 7, time: time, from: "bob", room: "general", to: nil, text: "first\nsecond\u{1B}x\r\nthird")
        let line = ChatFormat.line(for: message, me: "alice")
        let head = ChatFormat.localTime(time) + " bob: "
        #expect(line.indent == head.count)
        let pad = String(repeating: " ", count: head.count)
        #expect(ChatFormat.plainLines(line) == [head + "first", pad + "second^[x", pad + "third"])
        var s = ChatScreen(server: "h")
        s.append(line)
        let text = s.render(width: 30, height: 6).rows.map { row in String(row.filter { !$0.continuation }.map(\.character)) }
        #expect(text[1].hasPrefix(head + "first "), "\(text)")
        #expect(text[2].hasPrefix(pad + "second^[x "), "\(text)")
        #expect(text[3].hasPrefix(pad + "third "), "\(text)")
        #expect(!text.joined().contains("\\u{a}") && !text.joined().contains("\\u{d}"))
        #expect(ChatFormat.plainLines(ChatScreen.Line(style: .system, text: "a\u{7}b")) == ["a\\u{7}b"], "a lone line is escaped as before")
    }

    @Test("the user's own name is highlighted where it appears as a word, nothing else")
    func mentionHighlight() {
        var s = ChatScreen(server: "h")
        s.append(.init(style: .general, text: "bob: hi Alice, alicent is here", mentionsMe: true, highlight: "alice"))
        let row = s.render(width: 40, height: 3).rows[0]
        let marked = String(row.filter { $0.style == .mention }.map(\.character))
        #expect(marked == "Alice")
        #expect(row.first?.style == .general)
    }

    @Test("scrolled back, new messages do not move the view; unread counts and mentions for other conversations")
    func scrollback() {
        var s = ChatScreen(server: "h")
        for i in 0..<30 { s.append(.init(style: .general, text: "line \(i)")) }
        _ = s.render(width: 30, height: 7)
        s.pageUp()
        let before = s.render(width: 30, height: 7).rows.prefix(5).map { String($0.map(\.character)) }
        s.append(.init(style: .general, text: "line 30"))
        let after = s.render(width: 30, height: 7).rows.prefix(5).map { String($0.map(\.character)) }
        #expect(before == after, "the view stays where it was")
        s.pageDown()
        s.pageDown()
        #expect(s.render(width: 30, height: 7).rows[4].map(\.character).starts(with: "line 30"))
        s.append(.init(style: .group, text: "hey alice", mentionsMe: true), in: .group("team"))
        s.append(.init(style: .privateMessage, text: "psst"), in: .user("bob"))
        #expect(s.statusText.contains("[unread: @bob 1, team! 1]"), "\(s.statusText)")
        s.switchTo(.group("team"))
        #expect(s.statusText.contains("[unread: @bob 1]"))
    }
}
