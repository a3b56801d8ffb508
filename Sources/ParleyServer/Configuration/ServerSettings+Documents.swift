import Foundation

/// What is made from the declarations: `parley serve --help`, the reference in
/// docs/OPERATING.md and a settings file in YAML (docs/parley.example.yaml, `--print-config`).
/// Plain string building with no terminal widths, so the same declarations always give the same
/// bytes; `scripts/generate-config-docs` writes the docs and a test compares them.
extension ServerSettings {
    /// `parley serve --help`.
    public static var help: String {
        let defaults = ServerConfiguration()
        var lines = [
            "OVERVIEW: Run the chat server.",
            "",
            "USAGE: parley serve [--config FILE] [--SETTING VALUE ...]",
            "",
            "Each setting below is a flag, a PARLEY_* environment variable and a key of the settings",
            "file: flags win over the environment, which wins over the file, which wins over the",
            "defaults. docs/OPERATING.md (\"Configuration reference\") describes them, and",
            "docs/parley.example.yaml is a commented settings file.",
            "",
            "OPTIONS:",
        ]
        lines += entry("--config FILE", [
            "Read settings from FILE: YAML (.yaml, .yml) or JSON (.json), keys nested at the dots; "
                + "a file with any other name holds PARLEY_*=VALUE lines."
        ])
        lines += entry("--print-config", ["Print the settings in effect as a YAML settings file, and exit."])
        lines += entry("--print-config-reference", ["Print the reference of every setting (Markdown), and exit."])
        lines += entry("-h, --help", ["Show this help, and exit."])
        for group in groups {
            lines.append("")
            lines.append(group.title.uppercased() + ":")
            for setting in settings(in: group) {
                let details = ["key \(setting.key)", setting.environmentVariable, "default \(setting.shownValue(in: defaults))"]
                    + (setting.allowed.isEmpty ? [] : ["expected \(setting.allowed)"])
                lines += entry(setting.synopsis, [setting.help, details.joined(separator: "; ")])
            }
        }
        return lines.joined(separator: "\n")
    }

    /// One entry of help: the synopsis, then the text in a column (below it when it is long),
    /// each paragraph wrapped to 100 columns.
    static func entry(_ synopsis: String, _ text: [String]) -> [String] {
        let column = 26
        let head = "  " + synopsis
        var rest = text.flatMap { wrapped($0, width: 100 - column) }[...]
        var lines: [String] = []
        if head.count <= column - 2, let first = rest.popFirst() {
            lines.append(head.padding(toLength: column, withPad: " ", startingAt: 0) + first)
        } else {
            lines.append(head)
        }
        lines += rest.map { String(repeating: " ", count: column) + $0 }
        return lines
    }

    /// `text` in lines of at most `width` characters, broken at spaces (a longer word keeps a
    /// line of its own).
    static func wrapped(_ text: String, width: Int) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            if line.isEmpty {
                line = String(word)
            } else if line.count + 1 + word.count <= width {
                line += " " + word
            } else {
                lines.append(line)
                line = String(word)
            }
        }
        if !line.isEmpty || lines.isEmpty { lines.append(line) }
        return lines
    }

    /// The reference of every setting in Markdown: one table per group. It is the generated part
    /// of docs/OPERATING.md, "Configuration reference" (`parley serve --print-config-reference`).
    public static var reference: String {
        let defaults = ServerConfiguration()
        var lines: [String] = []
        for group in groups {
            if !lines.isEmpty { lines.append("") }
            lines.append("### \(group.title)")
            lines.append("")
            lines.append("| Key | Flag | Environment | Default | What it does |")
            lines.append("|---|---|---|---|---|")
            for setting in settings(in: group) {
                var flags = setting.flagForms.map { "`\($0)`" }.joined(separator: ", ")
                if setting.form == .list { flags += " (repeatable)" }
                let value: String
                switch setting.text(in: defaults) {
                case nil: value = setting.unsetText
                case ""?: value = "none"
                case let text?: value = "`\(text)`"
                }
                let meaning = setting.help + (setting.allowed.isEmpty ? "" : " Allowed: \(setting.allowed).")
                let cells = ["`\(setting.key)`", flags, "`\(setting.environmentVariable)`", value, meaning]
                lines.append("| " + cells.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `configuration` as a commented YAML settings file, every setting in it (one unset shows
    /// commented out, with an example). With `ServerConfiguration()` this is
    /// docs/parley.example.yaml.
    /// - Parameter configuration: the values to write.
    /// - Returns: the file's text.
    public static func yaml(for configuration: ServerConfiguration) -> String {
        var lines = [
            "# Settings of `parley serve`, read with `parley serve --config parley.yaml`.",
            "# Every key may be left out, and then keeps its default. PARLEY_* environment variables",
            "# win over this file, and flags win over both. A key in a group is nested (`port` under",
            "# `http:`) or dotted (`http.port: 8080`); a JSON file (.json) takes the same keys.",
            "# `parley serve --print-config` prints the settings in effect in this form.",
        ]
        for group in groups {
            let members = settings(in: group)
            let indent = group.prefix.isEmpty ? "" : "  "
            lines.append("")
            lines.append("# \(group.title)")
            if !group.prefix.isEmpty {
                // A group with nothing set is commented out too: an empty `tls:` is no group.
                let anySet = members.contains { $0.yamlIn(configuration) != nil }
                lines.append((anySet ? "" : "# ") + group.prefix + ":")
            }
            for (index, setting) in members.enumerated() {
                if index > 0 { lines.append("") }
                let name = setting.key.split(separator: ".").last.map { String($0) } ?? setting.key
                var details = [setting.synopsis, setting.environmentVariable, "default \(setting.shownValue(in: ServerConfiguration()))"]
                if !setting.allowed.isEmpty { details.append("expected \(setting.allowed)") }
                for paragraph in [setting.help, details.joined(separator: "; ") + "."] {
                    lines += wrapped(paragraph, width: 98 - indent.count).map { indent + "# " + $0 }
                }
                if let value = setting.yamlIn(configuration) {
                    lines.append(indent + name + ": " + value)
                } else {
                    lines.append(indent + "# " + name + ": " + SettingCodec<String>.quoted(setting.example ?? ""))
                }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
