import Foundation
import TernBundle
import TernCodecs
import TernCore
import TernRegistry

/// Feedback as clients send it.
public enum FeedbackParser {
    static let maxItems = 100_000

    public static func json(_ data: Data, received: Int64) throws(TernError) -> [FeedbackRecord] {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw .invalidArgument("feedback must be JSON: a list of {\"request_id\", \"label\" or \"value\", \"time\"} (or text/csv)")
        }
        guard let items = (parsed as? [Any]) ?? ((parsed as? [String: Any])?["feedback"] as? [Any]) else {
            throw .invalidArgument("feedback must be a JSON list (or {\"feedback\": [...]}) of {\"request_id\", \"label\" or \"value\"}")
        }
        guard items.count <= maxItems else { throw .invalidArgument("at most \(maxItems) feedback items per request; got \(items.count)") }
        return try items.enumerated().map { (index, item) throws(TernError) -> FeedbackRecord in
            guard let object = item as? [String: Any] else { throw .invalidArgument("feedback item \(index): not an object") }
            guard let id = object["request_id"] as? String, let requestID = RequestID.accept(id) else {
                throw .invalidArgument("feedback item \(index): request_id must be a non-empty string")
            }
            let truth = try Self.truth(object["label"], object["value"], item: index)
            return FeedbackRecord(
                requestID: requestID, truth: truth, time: try Self.time(object["time"], item: index) ?? received, received: received)
        }
    }

    public static func csv(_ text: String, received: Int64) throws(TernError) -> [FeedbackRecord] {
        let table = try CSVTable(text: text, source: "feedback CSV")
        guard let idColumn = table.index(of: "request_id") else { throw .invalidArgument("feedback CSV needs a request_id column") }
        let labelColumn = table.index(of: "label"), valueColumn = table.index(of: "value"), timeColumn = table.index(of: "time")
        guard (labelColumn == nil) != (valueColumn == nil) else {
            throw .invalidArgument("feedback CSV needs a label column or a value column (one of them)")
        }
        guard table.rows.count <= maxItems else { throw .invalidArgument("at most \(maxItems) feedback rows per request") }
        return try table.rows.enumerated().map { (index, row) throws(TernError) -> FeedbackRecord in
            guard let requestID = RequestID.accept(row[idColumn]) else { throw .invalidArgument("feedback row \(index + 1): empty request_id") }
            let truth: String
            if let labelColumn {
                var quoted = ""
                JSONText.appendQuoted(row[labelColumn], to: &quoted)
                truth = Double(row[labelColumn]) != nil ? row[labelColumn] : quoted
            } else {
                guard let value = Double(row[valueColumn!]), value.isFinite else {
                    throw .invalidArgument("feedback row \(index + 1): value '\(Echo.clip(row[valueColumn!]))' is not a number")
                }
                truth = String(value)
            }
            var time: Int64?
            if let timeColumn, !row[timeColumn].isEmpty { time = try Self.time(row[timeColumn], item: index) }
            return FeedbackRecord(requestID: requestID, truth: truth, time: time ?? received, received: received)
        }
    }

    private static func truth(_ label: Any?, _ value: Any?, item: Int) throws(TernError) -> String {
        guard (label == nil) != (value == nil) else {
            throw .invalidArgument("feedback item \(item): give \"label\" (a class) or \"value\" (a number), one of them")
        }
        func scalarOK(_ element: Any) -> Bool {
            if value != nil { return (element as? NSNumber)?.doubleValue.isFinite ?? false }
            return element is String || element is NSNumber
        }
        let given = label ?? value!
        let elements = (given as? [Any]) ?? [given]
        guard !elements.isEmpty, elements.allSatisfy(scalarOK) else {
            throw .invalidArgument(
                "feedback item \(item): "
                    + (value != nil
                        ? "value must be a number (or a list of numbers, one per row)"
                        : "label must be a string or a number (or a list of them, one per row)"))
        }
        guard let data = try? JSONSerialization.data(withJSONObject: given, options: [.fragmentsAllowed]) else {
            throw .invalidArgument("feedback item \(item): unreadable label")
        }
        return String(decoding: data, as: UTF8.self)
    }

    private static func time(_ value: Any?, item: Int) throws(TernError) -> Int64? {
        guard let value else { return nil }
        if let text = value as? String { return try PredictionTime.parse(text, name: "feedback item \(item): time") }
        if let number = value as? NSNumber, !(number is Bool) {
            return try OutsideNumber.integer(number.doubleValue, "feedback item \(item): time", in: OutsideNumber.epochMilliseconds)
        }
        throw .invalidArgument("feedback item \(item): time must be an RFC 3339 time or milliseconds since the epoch")
    }
}
