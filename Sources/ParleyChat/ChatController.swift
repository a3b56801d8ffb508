import Foundation
import ParleyClient
import ParleyCore
import ParleyWire

/// The chat client's logic, whatever shows it: runs a typed command against the server and says
/// what happened in lines; turns server events into lines. The full-screen and line modes both
/// use it.
/// Thread safety: an actor.
public actor ChatController {
    public private(set) var client: ParleyClient
    public let me: String
    public private(set) var current: ChatScreen.Conversation = .general
    /// What the server's events mean: lines, names learnt, whether the session ended for good.
    public private(set) var events: ChatEvents
    /// Names seen (users and groups), for Tab completion.
    public var knownUsers: Set<String> { events.knownUsers }
    public var knownGroups: Set<String> { events.knownGroups }
    /// Why the session ended for good (`/logout`; the server logged it out; an operator kicked
    /// or banned the user): set, the connection's end is not a reason to reconnect.
    public var ended: ChatEvents.Ending? { events.ended }

    public init(client: ParleyClient, me: String) {
        self.client = client
        self.me = me
        self.events = ChatEvents(me: me)
    }

    /// What a command produced: lines to show, and whether it failed.
    public struct Outcome: Sendable {
        public var lines: [(ChatScreen.Line, ChatScreen.Conversation?)] = []
        public var failed = false
        public var quit = false
        public var switchedTo: ChatScreen.Conversation?
    }

    public func replaceClient(_ client: ParleyClient) { self.client = client }

    public func note(_ message: WireMessage) { events.note(message) }

    public func noteUsers(_ names: [String]) { events.knownUsers.formUnion(names) }

    /// Runs one typed line.
    public func run(_ line: String) async -> Outcome {
        let command: ChatCommand?
        do { command = try ChatCommand.parse(line) } catch {
            var outcome = Outcome()
            outcome.lines.append((ChatScreen.Line(style: .error, text: error.description), nil))
            outcome.failed = true
            return outcome
        }
        guard let command else { return Outcome() }
        return await run(command)
    }

    /// Runs one command.
    public func run(_ command: ChatCommand) async -> Outcome {
        var outcome = Outcome()
        func say(_ text: String, _ style: Style = .system) { outcome.lines.append((ChatScreen.Line(style: style, text: text), nil)) }
        func fail(_ text: String) {
            say(text, .error)
            outcome.failed = true
        }
        do {
            switch command {
            case .say(let text):
                let sent: WireMessage
                switch current {
                case .general: sent = try await client.send(text)
                case .group(let group): sent = try await client.send(text, in: group)
                case .user(let user): sent = try await client.send(text, to: user)
                }
                outcome.lines.append((ChatFormat.line(for: sent, me: me), nil))
            case .privateMessage(let user, let text):
                let sent = try await client.send(text, to: user)
                events.knownUsers.insert(user)
                outcome.lines.append((ChatFormat.line(for: sent, me: me), nil))
            case .groupMessage(let group, let text):
                let sent = try await client.send(text, in: group)
                outcome.lines.append((ChatFormat.line(for: sent, me: me), nil))
            case .createGroup(let group):
                try await client.request(.group(.create(group: group, inviteOnly: false)))
                events.knownGroups.insert(group)
                say("created group \(group)")
            case .joinGroup(let group):
                try await client.request(.group(.join(group: group)))
                events.knownGroups.insert(group)
                say("joined \(group)")
            case .leaveGroup(let group):
                try await client.request(.group(.leave(group: group)))
                if current == .group(group) { current = .general; outcome.switchedTo = .general }
                say("left \(group)")
            case .myGroups, .allGroups:
                var all: [GroupInfo] = []
                var after: String? = nil
                repeat {
                    let page = try await client.request(command == .myGroups ? .myGroups(after: after) : .groups(after: after))
                    all += page.groups ?? []
                    after = page.more == true ? page.groups?.last?.name : nil
                } while after != nil
                events.knownGroups.formUnion(all.map(\.name))
                say(all.isEmpty ? (command == .myGroups ? "you are in no group" : "there are no groups")
                    : (command == .myGroups ? "your groups: " : "groups: ")
                        + all.map { "\($0.name) (\($0.members), owner \($0.owner)\($0.inviteOnly ? ", invite-only" : ""))" }.joined(separator: ", "))
            case .members(let group):
                let reply = try await client.request(.groupMembers(group: group))
                let members = reply.members ?? []
                events.knownUsers.formUnion(members.map(\.username))
                say("\(reply.group ?? group): " + members.map { "\($0.username)\($0.owner ? " (owner)" : "")\($0.online ? " *" : "")" }.joined(separator: ", ")
                    + "   (* online)")
            case .online:
                let reply = try await client.request(.who())
                let users = reply.users ?? []
                events.knownUsers.formUnion(users)
                say("online (\(reply.count ?? users.count)): " + users.joined(separator: ", ") + (reply.more == true ? ", …" : ""))
            case .invite(let group, let user):
                try await client.request(.group(.invite(group: group, user: user)))
                say("invited \(user) to \(group)")
            case .kick(let group, let user):
                try await client.request(.group(.remove(group: group, user: user)))
                say("removed \(user) from \(group)")
            case .mode(let group, let inviteOnly):
                try await client.request(.group(.setMode(group: group, inviteOnly: inviteOnly)))
                say("\(group) is now \(inviteOnly ? "invite-only" : "open")")
            case .history(let count):
                let target: Target
                switch current {
                case .general: target = .room("general")
                case .group(let g): target = .room(g)
                case .user(let u): target = .with(u)
                }
                let page = try await client.request(.history(target, before: nil, limit: count ?? 20))
                let messages = page.messages ?? []
                say("— history of \(current): \(messages.count) message\(messages.count == 1 ? "" : "s") —")
                for m in messages { outcome.lines.append((ChatFormat.line(for: m, me: me), nil)) }
            case .to(let name):
                let target: ChatScreen.Conversation
                if name.lowercased() == "general" { target = .general }
                else if name.hasPrefix("@") { target = .user(String(name.dropFirst())) }
                else if events.knownGroups.contains(where: { $0.lowercased() == name.lowercased() }) { target = .group(name) }
                else {
                    // A group of mine, or else a user.
                    let mine = try await client.request(.myGroups(after: nil)).groups ?? []
                    events.knownGroups.formUnion(mine.map(\.name))
                    target = mine.contains { $0.name.lowercased() == name.lowercased() } ? .group(name) : .user(name)
                }
                current = target
                outcome.switchedTo = target
                say("now talking in \(target)")
            case .changePassword(let old?, let new?):
                try await client.changePassword(current: old, new: new)
                say("password changed; your other sessions were logged out")
            case .changePassword:
                fail("usage: /password, or /password <current> <new>")
            case .logout(let everywhere):
                // Set first: the server closes the connection right after its answer.
                let ending = ChatEvents.Ending(kind: .loggedOut, text: everywhere ? "logged out everywhere" : "logged out")
                events.ended = ending
                do {
                    try await client.request(.logout(everywhere: everywhere))
                } catch {
                    events.ended = nil
                    throw error
                }
                say(ending.text)
                outcome.quit = true
            case .sessions:
                let reply = try await client.request(.sessions)
                for text in ChatFormat.sessionLines(reply.sessions ?? []) { say(text) }
            case .endSession(let id):
                try await client.request(.endSession(id))
                say("ended session #\(id)")
            case .help:
                say("commands:")
                for u in ChatCommand.usages {
                    say("  /\(u.name)\(u.arguments.isEmpty ? "" : " " + u.arguments) — \(u.summary)")
                }
                say("  plain text goes to the current conversation; PageUp/PageDown scroll; Tab completes")
            case .quit:
                outcome.quit = true
            }
        } catch {
            fail(ChatFormat.words(for: error))
        }
        return outcome
    }

    /// Lines for a server event (none for events not shown); see ``ChatEvents/lines(for:)``.
    public func lines(for event: ClientEvent) -> [(ChatScreen.Line, ChatScreen.Conversation?)] {
        events.lines(for: event)
    }

    /// Logging in again failed with `error`: lines saying why, and the session ended for good,
    /// when trying again is pointless (see ``ChatEvents/refused(_:)``); nil to keep trying.
    public func refused(_ error: any Error) -> [(ChatScreen.Line, ChatScreen.Conversation?)]? {
        events.refused(error)
    }
}
