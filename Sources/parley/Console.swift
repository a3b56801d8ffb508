import Foundation

/// Unbuffered output for lines that scripts and people wait for.
enum Console {
    static func line(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }
}
