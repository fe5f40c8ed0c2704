/// JSON text written by hand (log lines, JSON Lines outputs): one escaper for every writer.
public enum JSONText {
    /// Appends `text` as a JSON string literal: quotes, backslashes and every control character escaped
    /// (and U+2028/U+2029, which some JavaScript readers take for line breaks).
    public static func appendQuoted(_ text: String, to line: inout String) {
        line += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": line += "\\\""
            case "\\": line += "\\\\"
            case "\n": line += "\\n"
            case "\r": line += "\\r"
            case "\t": line += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    let hex = String(scalar.value, radix: 16)
                    line += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    line.unicodeScalars.append(scalar)
                }
            }
        }
        line += "\""
    }

    /// `text` as a JSON string literal.
    public static func quoted(_ text: String) -> String {
        var line = ""
        appendQuoted(text, to: &line)
        return line
    }
}
