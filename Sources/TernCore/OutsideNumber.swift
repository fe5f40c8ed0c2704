import Foundation

/// Numbers read from outside (JSON, YAML, query strings, flags): each is checked for range before any
/// conversion that could trap (`Int64(1e19)`, `Duration.milliseconds(Int(1e300))`), and a value out of range is
/// an `invalidArgument` naming the field. Every conversion of an outside number goes through here.
///
/// ```swift
/// let time = try OutsideNumber.integer(1e19, "feedback item 0: time", in: OutsideNumber.epochMilliseconds)
/// // throws: feedback item 0: time must be between 0 and 32503680000000; got 1e+19
/// ```
public enum OutsideNumber {
    /// Milliseconds since the epoch that a time may take: 1970 to the year 3000.
    public static let epochMilliseconds: ClosedRange<Int64> = 0...32_503_680_000_000

    /// The longest duration any setting takes: ten years.
    public static let longestDuration = Duration.seconds(315_360_000)

    /// A whole number within `range`; fractions are truncated toward zero, as `Int64(_:)` does.
    public static func integer(_ value: Double, _ field: String, in range: ClosedRange<Int64>) throws(TernError) -> Int64 {
        guard value.isFinite, value >= Double(range.lowerBound), value <= Double(range.upperBound),
            let whole = Int64(exactly: value.rounded(.towardZero)), range.contains(whole)
        else {
            throw .invalidArgument("\(field) must be between \(range.lowerBound) and \(range.upperBound); got \(describe(value))")
        }
        return whole
    }

    /// A whole number written as text (a query parameter) within `range`.
    public static func integer(text: some StringProtocol, _ field: String, in range: ClosedRange<Int64>) throws(TernError) -> Int64 {
        guard let value = Int64(text.trimmingCharacters(in: .whitespaces)), range.contains(value) else {
            throw .invalidArgument(
                "\(field) must be a whole number between \(range.lowerBound) and \(range.upperBound); got '\(Echo.clip(String(text)))'")
        }
        return value
    }

    /// A finite number within `range`.
    public static func finite(_ value: Double, _ field: String, in range: ClosedRange<Double>) throws(TernError) -> Double {
        guard value.isFinite, range.contains(value) else {
            throw .invalidArgument(
                "\(field) must be a number between \(describe(range.lowerBound)) and \(describe(range.upperBound)); got \(describe(value))")
        }
        return value
    }

    /// A duration of zero or more seconds, at most `longest`.
    public static func duration(seconds: Double, _ field: String, longest: Duration = longestDuration) throws(TernError) -> Duration {
        let limit = Double(longest.components.seconds)
        guard seconds.isFinite, seconds >= 0, seconds <= limit else {
            throw .invalidArgument("\(field) must be between 0 and \(Int64(limit)) seconds; got \(describe(seconds))")
        }
        return .nanoseconds(Int64((seconds * 1e9).rounded()))
    }

    /// A duration as settings write it: seconds as a number (`30`, `0.5`), or text with a unit
    /// (`250ms`, `30s`, `5m`, `1h`, `1d`); at most `longest`.
    public static func duration(_ value: Any, _ field: String, longest: Duration = longestDuration) throws(TernError) -> Duration {
        if let seconds = value as? Int { return try duration(seconds: Double(seconds), field, longest: longest) }
        if let seconds = value as? Double { return try duration(seconds: seconds, field, longest: longest) }
        if let text = value as? String { return try duration(text: text, field, longest: longest) }
        throw .invalidArgument("\(field): not a duration (such as 30s, 5m, 1h)")
    }

    /// A duration written as text: a plain number of seconds, or a number with a unit (`ms`, `s`, `m`, `h`, `d`).
    public static func duration(text: String, _ field: String, longest: Duration = longestDuration) throws(TernError) -> Duration {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        var scale = 1.0
        var number = Substring(trimmed)
        for (unit, unitScale) in units where trimmed.hasSuffix(unit) {
            scale = unitScale
            number = trimmed.dropLast(unit.count)
            break
        }
        // Only plain decimals: Double("inf"), "nan", hex floats and signs are not durations.
        guard !number.isEmpty,
            number.utf8.allSatisfy({
                ($0 >= 48 && $0 <= 57) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e")
                    || $0 == UInt8(ascii: "E") || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-")
            }),
            number.first.map({ $0.isNumber || $0 == "." }) == true, let count = Double(number)
        else {
            throw .invalidArgument("\(field): '\(Echo.clip(text))' is not a duration (such as 250ms, 30s, 5m, 1h, 1d)")
        }
        return try duration(seconds: count * scale, field, longest: longest)
    }

    /// A number of seconds in a duration, as a Double.
    public static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private static func describe(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
    }
}
