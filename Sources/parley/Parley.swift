import ArgumentParser

@main
struct Parley: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley",
        abstract: "Parley: a multi-user chat server and its clients.",
        subcommands: [Serve.self, Chat.self, Admin.self, Bench.self],
        defaultSubcommand: nil)
}
