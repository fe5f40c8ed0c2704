import Foundation

/// Fields of a query string or an `application/x-www-form-urlencoded` body, as HTML forms and GraphQL clients
/// write them: `+` is a space, `%XX` a byte; a field given twice keeps its last value.
public enum FormFields {
    public static func parse(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            fields[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return fields
    }

    static func decode(_ text: Substring) -> String {
        let spaced = text.replacingOccurrences(of: "+", with: " ")
        return spaced.removingPercentEncoding ?? spaced
    }
}
