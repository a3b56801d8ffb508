import Foundation

/// A strict reader of Prometheus' text exposition format (version 0.0.4), for checking what
/// `/metrics` serves: every line is a `# HELP`, a `# TYPE`, another comment or a sample
/// `name{label="value",...} value [timestamp]`; names and label names are well formed, label
/// values well escaped, values numbers; `# TYPE` comes at most once per family and before its
/// samples; a family's samples are contiguous; no sample appears twice; counters are not
/// negative; a histogram's buckets carry `le`, grow with it, and end in `+Inf` equal to `_count`.
struct PrometheusText {
    struct Sample: Hashable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    struct ParseError: Error, CustomStringConvertible {
        var line: Int
        var message: String
        var description: String { "line \(line): \(message)" }
    }

    /// The family of each `# TYPE`, and its type.
    private(set) var types: [String: String] = [:]
    private(set) var help: [String: String] = [:]
    private(set) var samples: [Sample] = []

    /// Every sample name (with `_bucket`, `_sum`, `_count` for histograms).
    var sampleNames: Set<String> { Set(samples.map(\.name)) }

    /// The value of the one sample named `name` with exactly `labels`.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    /// The sum of every sample named `name` whose labels include `matching`.
    func sum(_ name: String, matching: [String: String] = [:]) -> Double {
        samples.filter { s in s.name == name && matching.allSatisfy { s.labels[$0.key] == $0.value } }.reduce(0) { $0 + $1.value }
    }

    init(parsing text: String) throws {
        guard !text.isEmpty else { return }
        guard text.hasSuffix("\n") else { throw ParseError(line: 0, message: "the text does not end with a line break") }
        var finished = Set<String>()
        var current: String? = nil
        var seen = Set<String>()
        for (index, line) in text.dropLast().split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            func fail(_ message: String) -> ParseError { ParseError(line: number, message: "\(message): \(line)") }
            if line.isEmpty { throw fail("an empty line") }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
                guard parts.count >= 2, parts[0] == "#" else { throw fail("a comment must start with '# '") }
                switch parts[1] {
                case "TYPE":
                    guard parts.count == 4, Self.isMetricName(parts[2]) else { throw fail("a malformed TYPE line") }
                    guard ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else { throw fail("an unknown type") }
                    guard types[parts[2]] == nil else { throw fail("a second TYPE for \(parts[2])") }
                    guard !finished.contains(parts[2]), current != parts[2] else { throw fail("TYPE after the samples of \(parts[2])") }
                    types[parts[2]] = parts[3]
                case "HELP":
                    guard parts.count >= 3, Self.isMetricName(parts[2]) else { throw fail("a malformed HELP line") }
                    guard help[parts[2]] == nil else { throw fail("a second HELP for \(parts[2])") }
                    help[parts[2]] = parts.count == 4 ? parts[3] : ""
                default:
                    break  // any other comment
                }
                continue
            }
            let sample = try Self.sample(line, fail: fail)
            let owner = self.family(of: sample.name)
            if owner != current {
                if let current { finished.insert(current) }
                guard !finished.contains(owner) else { throw fail("the samples of \(owner) are not together") }
                current = owner
            }
            let key = sample.name + "{" + sample.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") + "}"
            guard seen.insert(key).inserted else { throw fail("a second sample \(key)") }
            if types[owner] == "counter", sample.value < 0 { throw fail("a negative counter") }
            if types[owner] == "histogram", sample.name == owner + "_bucket", sample.labels["le"] == nil { throw fail("a bucket without le") }
            samples.append(sample)
        }
        try checkHistograms()
    }

    /// The family a sample belongs to: its own name, or for `_bucket`, `_sum` and `_count`
    /// samples of a histogram or summary, the name without the suffix.
    func family(of name: String) -> String {
        if types[name] != nil { return name }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if let type = types[base], type == "histogram" || type == "summary" { return base }
        }
        return name
    }

    private func checkHistograms() throws {
        for (family, type) in types where type == "histogram" {
            let buckets = samples.filter { $0.name == family + "_bucket" }
            let series = Dictionary(grouping: buckets) { $0.labels.filter { $0.key != "le" } }
            for (labels, group) in series {
                let ordered = try group.map { sample -> (Double, Double) in
                    guard let le = sample.labels["le"], let bound = Self.number(le) else {
                        throw ParseError(line: 0, message: "\(family): a bucket with a bad le")
                    }
                    return (bound, sample.value)
                }.sorted { $0.0 < $1.0 }
                guard ordered.last?.0 == .infinity else { throw ParseError(line: 0, message: "\(family)\(labels): no +Inf bucket") }
                for (a, b) in zip(ordered, ordered.dropFirst()) where b.1 < a.1 {
                    throw ParseError(line: 0, message: "\(family)\(labels): buckets are not cumulative")
                }
                guard value(family + "_count", labels) == ordered.last?.1 else {
                    throw ParseError(line: 0, message: "\(family)\(labels): the +Inf bucket is not the count")
                }
                guard value(family + "_sum", labels) != nil else { throw ParseError(line: 0, message: "\(family)\(labels): no _sum") }
            }
        }
    }

    private static func sample(_ line: Substring, fail: (String) -> ParseError) throws -> Sample {
        var rest = line[...]
        let name = String(rest.prefix { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") })
        guard isMetricName(name) else { throw fail("a bad metric name") }
        rest = rest.dropFirst(name.count)
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                let label = String(rest.prefix { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") })
                guard isLabelName(label) else { throw fail("a bad label name") }
                rest = rest.dropFirst(label.count)
                guard rest.hasPrefix("=\"") else { throw fail("a label without =\"") }
                rest = rest.dropFirst(2)
                var value = ""
                while true {
                    guard let c = rest.first else { throw fail("an unterminated label value") }
                    rest = rest.dropFirst()
                    if c == "\"" { break }
                    if c == "\\" {
                        guard let escaped = rest.first else { throw fail("an unterminated escape") }
                        rest = rest.dropFirst()
                        switch escaped {
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        case "n": value.append("\n")
                        default: throw fail("a bad escape \\\(escaped)")
                        }
                    } else if c == "\n" {
                        throw fail("a raw line break in a label value")
                    } else {
                        value.append(c)
                    }
                }
                guard labels.updateValue(value, forKey: label) == nil else { throw fail("label \(label) twice") }
                if rest.first == "," { rest = rest.dropFirst() } else if rest.first != "}" { throw fail("labels not separated by ,") }
            }
            rest = rest.dropFirst()
        }
        guard rest.first == " " else { throw fail("no space before the value") }
        let fields = rest.dropFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard (1...2).contains(fields.count), let value = number(String(fields[0])) else { throw fail("a bad value") }
        if fields.count == 2, Int64(fields[1]) == nil { throw fail("a bad timestamp") }
        return Sample(name: name, labels: labels, value: value)
    }

    static func number(_ text: String) -> Double? {
        switch text {
        case "+Inf", "Inf": return .infinity
        case "-Inf": return -.infinity
        case "NaN": return .nan
        default:
            // Double("inf"), Double("nan") and hexadecimal are not Prometheus numbers.
            guard text.allSatisfy({ $0.isASCII && ($0.isNumber || "+-.eE".contains($0)) }) else { return nil }
            return Double(text)
        }
    }

    static func isMetricName(_ name: String) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter || first == "_" || first == ":" else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") }
    }

    static func isLabelName(_ name: String) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter || first == "_" else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }
}
