/// Tern's name and version, as the server reports them.
public enum TernVersion {
    public static let name = "tern"
    public static let version = "0.1.0"
}

/// The numbers a model version may have: 1 through ``maximum``. Versions come from outside (a manifest, a
/// flag, a URL); bounding them keeps "the next version" and every other sum over them from overflowing.
public enum ModelVersionNumber {
    public static let maximum = 999_999_999

    /// `number` itself when it is within bounds.
    /// - Throws: ``TernError`` `invalidArgument` naming `source` and the bounds.
    @discardableResult
    public static func check(_ number: Int, _ source: String = "version") throws(TernError) -> Int {
        guard (1...maximum).contains(number) else {
            throw .invalidArgument("\(source) must be between 1 and \(maximum), got \(number)")
        }
        return number
    }

    /// A version number read from text (a URL segment, a query parameter).
    public static func parse(_ text: String, _ source: String = "version") throws(TernError) -> Int {
        guard let number = Int(text) else {
            throw .invalidArgument("\(source) must be a whole number between 1 and \(maximum), got '\(Echo.clip(text))'")
        }
        return try check(number, source)
    }
}

/// Text from a client echoed back in an error: clipped, so a megabyte of name does not become a megabyte of
/// error (or a gRPC status message larger than the client accepts).
public enum Echo {
    public static let limit = 128

    public static func clip(_ text: some StringProtocol) -> String {
        guard text.utf8.count > limit else { return String(text) }
        var end = text.startIndex
        var bytes = 0
        for index in text.indices {
            let size = text[index].utf8.count
            if bytes + size > limit { break }
            bytes += size
            end = text.index(after: index)
        }
        return "\(text[..<end])… (\(text.utf8.count) bytes)"
    }
}
