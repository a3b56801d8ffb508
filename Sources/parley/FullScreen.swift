import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import ParleyChat
import ParleyClient
import ParleyCore

/// The full-screen chat: everything that happens (keys, server events, command outcomes, a
/// resize, the connection dropping) arrives on one stream and changes the pure ``ChatScreen``,
/// which is then drawn; incoming messages never touch the input line.
/// Thread safety: runs on one task.
struct FullScreen {
    let controller: ChatController
    let server: String
    let me: String
    let color: Bool

    enum Happening: Sendable {
        case keys([UInt8])
        case inputEnded
        case event(ClientEvent)
        case outcome(ChatController.Outcome)
        case resized
        case disconnected
        case reconnected(ParleyClient)
        case reconnectFailed(String)
        /// Logging in again was refused for good (banned; the password no longer works).
        case reconnectRefused(ParleyError)
    }

    /// What the user entered, in the order entered: a typed line, or a command the screen put
    /// together (a password change, whose passwords were asked for and never shown).
    enum Entry: Sendable {
        case line(String)
        case command(ChatCommand)
    }

    /// How many typed lines may wait for the ones before them to be answered; a line beyond
    /// that is not sent, and the screen says so.
    static let maxWaitingLines = 1000

    /// Runs until the user leaves.
    /// - Returns: why the session ended for good (logged out, kicked, banned), if it did.
    @discardableResult
    func run() async throws -> ChatEvents.Ending? {
        let terminal = Terminal(color: color)
        terminal.enterRawMode()
        defer { terminal.restore() }
        let (happenings, post) = AsyncStream.makeStream(of: Happening.self)
        // Signals: restore the terminal and leave; a resize redraws.
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGHUP, SIGQUIT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                Terminal.shared?.restore()
                exit(1)
            }
            source.resume()
            sources.append(source)
        }
        signal(SIGWINCH, SIG_IGN)
        let winch = DispatchSource.makeSignalSource(signal: SIGWINCH, queue: .global())
        winch.setEventHandler { post.yield(.resized) }
        winch.resume()
        defer {
            winch.cancel()
            for s in sources { s.cancel() }
        }
        let input = Task {
            for await chunk in Terminal.input() { post.yield(.keys(chunk)) }
            post.yield(.inputEnded)
        }
        defer { input.cancel() }
        // Typed lines run one at a time, in the order typed: a line starts only once the one
        // before it has been answered, so `/cg team` then `/gc team hi` (pasted, or typed fast)
        // finds the group made. (A task per line would let the controller, an actor, start the
        // second while the first awaits its reply, or even start them in the other order.)
        let (typed, submit) = AsyncStream.makeStream(of: Entry.self, bufferingPolicy: .bufferingOldest(Self.maxWaitingLines))
        let controller = self.controller
        let runner = Task {
            for await entry in typed {
                switch entry {
                case .line(let line): post.yield(.outcome(await controller.run(line)))
                case .command(let command): post.yield(.outcome(await controller.run(command)))
                }
            }
        }
        func enter(_ entry: Entry) -> Bool {
            if case .dropped = submit.yield(entry) { return false }
            return true
        }
        defer {
            submit.finish()
            runner.cancel()
        }
        var pump = Self.pumpEvents(await controller.client, post: post)

        var screen = ChatScreen(server: server)
        screen.username = me
        screen.connection = "connected"
        screen.system("Welcome, \(me). /help lists the commands; Ctrl-C or /quit leaves.")
        var decoder = KeyDecoder()
        var quitting = false
        /// While `/password` asks for the current and the new password: the answers so far.
        var passwords: [String]?
        func redraw(force: Bool = false) {
            let size = terminal.size
            let frame = screen.render(width: size.width, height: size.height)
            terminal.draw(frame.rows, cursor: frame.cursor, force: force)
        }
        redraw()
        for await happening in happenings {
            switch happening {
            case .keys(let bytes):
                for key in decoder.feed(bytes) {
                    // No history or completion into a hidden password.
                    if passwords != nil, [Key.up, .down, .tab, .control("p"), .control("n")].contains(key) { continue }
                    switch key {
                    case .character(let c): screen.editor.insert([c])
                    case .enter where passwords != nil:
                        var answers = passwords ?? []
                        answers.append(screen.editor.submit(remember: false))
                        if answers.count < 2 {
                            passwords = answers
                            screen.secretPrompt = "New password (Esc cancels): "
                        } else {
                            passwords = nil
                            screen.secretPrompt = nil
                            if !enter(.command(.changePassword(current: answers[0], new: answers[1]))) {
                                screen.system("\(Self.maxWaitingLines) lines are waiting for the server; password not changed", style: .error)
                            }
                        }
                    case .enter:
                        // A line holding passwords is not kept in the history.
                        let secret = screen.editor.line.trimmingCharacters(in: .whitespaces).lowercased().hasPrefix("/passw")
                        let line = screen.editor.submit(remember: !secret)
                        if (try? ChatCommand.parse(line)) == ChatCommand.changePassword(current: nil, new: nil) {
                            passwords = []
                            screen.secretPrompt = "Current password (Esc cancels): "
                        } else if !enter(.line(line)) {
                            screen.system("\(Self.maxWaitingLines) lines are waiting for the server; not sent: \(line)", style: .error)
                        }
                    case .escape where passwords != nil:
                        passwords = nil
                        screen.secretPrompt = nil
                        _ = screen.editor.submit(remember: false)
                        screen.system("password not changed")
                    case .backspace, .control("h"): screen.editor.backspace()
                    case .delete: screen.editor.delete()
                    case .left, .control("b"): screen.editor.left()
                    case .right, .control("f"): screen.editor.right()
                    case .home, .control("a"): screen.editor.home()
                    case .end, .control("e"): screen.editor.end()
                    case .wordLeft: screen.editor.wordLeft()
                    case .wordRight: screen.editor.wordRight()
                    case .control("u"): screen.editor.killToStart()
                    case .control("w"): screen.editor.killWord()
                    case .up, .control("p"): screen.editor.historyUp()
                    case .down, .control("n"): screen.editor.historyDown()
                    case .pageUp: screen.pageUp()
                    case .pageDown: screen.pageDown()
                    case .tab:
                        let names = Array(await controller.knownUsers) + Array(await controller.knownGroups) + ["general"]
                        let matches = screen.editor.complete(commands: ChatCommand.names, names: names)
                        if matches.count > 1 { screen.system(matches.joined(separator: "  ")) }
                    case .control("c"), .control("d") where screen.editor.text.isEmpty || key == .control("c"):
                        quitting = true
                    case .control("l"): redraw(force: true)
                    default: break
                    }
                }
            case .inputEnded:
                quitting = true
            case .event(let event):
                for (line, conversation) in await controller.lines(for: event) { screen.append(line, in: conversation) }
            case .outcome(let outcome):
                for (line, conversation) in outcome.lines { screen.append(line, in: conversation) }
                if let target = outcome.switchedTo { screen.switchTo(target) }
                if outcome.quit { quitting = true }
            case .resized:
                redraw(force: true)
            case .disconnected:
                guard !quitting else { break }
                if let ending = await controller.ended {
                    // Logged out (here, or by the server), kicked or banned by an operator:
                    // reconnecting would undo it or be refused. Running `parley chat` again is
                    // the way back, for whoever may.
                    screen.connection = ending.status
                    screen.system("\(ending.text); not reconnecting. /quit or Ctrl-C leaves", style: .error)
                    break
                }
                screen.connection = "reconnecting"
                screen.system("connection lost; reconnecting…", style: .error)
                let client = await controller.client
                Task { await Self.reconnect(client, post: post) }
            case .reconnected(let client):
                await controller.replaceClient(client)
                pump = Self.pumpEvents(client, post: post)
                screen.connection = "connected"
                screen.system("reconnected")
            case .reconnectFailed(let reason):
                screen.connection = "offline: \(reason)"
            case .reconnectRefused(let error):
                for (line, conversation) in await controller.refused(error) ?? [] { screen.append(line, in: conversation) }
                if let ending = await controller.ended {
                    screen.connection = ending.status
                    screen.system("not reconnecting. /quit or Ctrl-C leaves", style: .error)
                }
            }
            if quitting { break }
            redraw()
        }
        pump.cancel()
        await controller.client.close()
        return await controller.ended
    }

    /// Forwards a client's events until its connection closes, then says so.
    static func pumpEvents(_ client: ParleyClient, post: AsyncStream<Happening>.Continuation) -> Task<Void, Never> {
        Task {
            for await event in client.events() { post.yield(.event(event)) }
            if !Task.isCancelled { post.yield(.disconnected) }
        }
    }

    /// Tries again with a growing, jittered delay (0.5 s doubling to 30 s) until it gets back in,
    /// or is refused for good (`BANNED`, `INVALID_CREDENTIALS`: trying again cannot help).
    static func reconnect(_ old: ParleyClient, post: AsyncStream<Happening>.Continuation) async {
        var delay = 0.5
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(Int(delay * 1000 * Double.random(in: 0.5...1.5))))
            do {
                let client = try await old.reconnect(timeout: 5)
                post.yield(.reconnected(client))
                return
            } catch let error as ParleyError where error.code == .banned || error.code == .invalidCredentials {
                post.yield(.reconnectRefused(error))
                return
            } catch {
                post.yield(.reconnectFailed(ChatFormat.words(for: error)))
                delay = min(delay * 2, 30)
            }
        }
    }
}
