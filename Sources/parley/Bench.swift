import ArgumentParser

/// `parley bench`: load generator (see docs/BENCHMARKS.md).
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure throughput and latency against a server.")
    func run() async throws {}
}
