import Foundation
import Hummingbird
import NIOCore
import TernBundle
import TernCore
import TernHTTP
import TernRegistry

/// Ground truth that arrives after the prediction, and the live quality it gives each version:
///
/// ```
/// POST /api/v1/feedback                      [{"request_id": "...", "label": 1, "time": "..."}] or CSV
/// GET  /api/v1/models/{model}/performance    per version: accuracy ... (classification), MAE ... (regression)
/// ```
/// Feedback is joined with the prediction log by request id: the id a prediction's answer carried
/// (`X-Request-ID`). `label` (a class) or `value` (a number) may be an array, one per row of the request.
/// Feedback for an id the log does not know is not stored and is reported back; feedback sent again for the
/// same id replaces the earlier (the last wins).
struct FeedbackRoutes: Sendable {
    let log: PredictionLogLocation
    let reader: PredictionReader
    let http: HTTPFrontEndConfiguration
    /// The registry, for the bundle's class labels and validation metrics; nil when serving a folder.
    let models: RegistryModels?

    func register(on router: ScopedRouter) {
        router.post("/api/v1/feedback", .infer) { request, _ in
            let body = try await HTTPFrontEndConfiguration.collectBody(request, upTo: http.maxRequestBytes, flag: "--max-request-size")
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let contentType = request.headers[.contentType]?.lowercased() ?? ""
            let items = contentType.hasPrefix("text/csv")
                ? try FeedbackParser.csv(String(buffer: body), received: now)
                : try FeedbackParser.json(Data(buffer: body), received: now)
            let unknown = try await store().addFeedback(items)
            var text = "{\"accepted\":\(Set(items.map(\.requestID)).count - unknown.count),\"unknown\":\(unknown.count)"
            text += ",\"unknown_request_ids\":["
            text += unknown.prefix(100).map { id in
                var quoted = ""
                LineLogHandler.append(id, to: &quoted)
                return quoted
            }.joined(separator: ",")
            text += "]}"
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("/api/v1/models/{model}/performance", .read) { request, context in
            let name = try context.parameters.require("model")
            let since = try request.uri.queryParameters.get("since").map { try PredictionTime.parse(String($0), name: "since") }
            let answers = try await performance(of: name, since: since, newest: nil)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            let body = try encoder.encode(PerformanceAnswer(model: name, versions: answers))
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
    }

    /// Each version's live quality from the predictions with feedback (since a time, or the newest `newest`).
    func performance(of name: String, since: Int64?, newest: Int?) async throws -> [VersionPerformance] {
        let models = self.models
        return try await LivePerformance.versions(in: try await store(), model: name, since: since, newest: newest) { version in
            guard let models, let record = try? await models.registry.version(name, version) else { return (nil, nil) }
            return (record.manifest.classLabels, record.metrics)
        }
    }

    /// The ground truth of a model's recent predictions by request id, one label per row (for the retraining
    /// command's data).
    func labels(of model: String) async throws -> [String: [String]] {
        var labels: [String: [String]] = [:]
        for (record, feedback) in try await store().predictionsWithFeedback(model: model, since: nil, limit: 100_000) {
            guard let truth = try? JSONSerialization.jsonObject(with: Data(feedback.truth.utf8), options: .fragmentsAllowed) else { continue }
            labels[record.requestID] = ((truth as? [Any]) ?? [truth]).map { "\($0)" }
        }
        return labels
    }

    private func store() async throws(TernError) -> PredictionStore {
        guard let store = try await reader.store(log) as? PredictionStore else {
            throw TernError.invalidArgument("feedback needs the prediction log in a database (SQLite or PostgreSQL), "
                + "not in JSON Lines files (--prediction-log)")
        }
        return store
    }
}

public struct PerformanceAnswer: Codable, Sendable {
    public var model: String
    public var versions: [VersionPerformance]
}

public struct VersionPerformance: Codable, Sendable {
    public var version: Int
    /// Predictions with feedback, and the rows they held.
    public var predictions: Int
    public var rows: Int
    /// Feedback whose rows did not match its prediction's (left out).
    public var mismatched: Int
    /// From the prediction to the feedback's arrival, in seconds.
    public var labelDelaySecondsMedian: Double?
    public var live: ValidationMetrics?
    /// What the bundle measured on its holdout at pack time.
    public var validation: ValidationMetrics?
}

/// Live quality from predictions joined with their ground truth.
public enum LivePerformance {
    /// Each version's live quality from a prediction log's predictions with feedback; `version` gives a
    /// version's class labels and validation metrics (from its manifest) when known.
    public static func versions(
        in store: PredictionStore, model: String, since: Int64? = nil, newest: Int? = nil,
        version info: (Int) async -> (classLabels: [String]?, validation: ValidationMetrics?)
    ) async throws -> [VersionPerformance] {
        var joined = try await store.predictionsWithFeedback(model: model, since: since, limit: 1_000_000)
        if let newest, joined.count > newest { joined = Array(joined.suffix(newest)) }
        var versions: [Int: [(record: PredictionRecord, feedback: FeedbackRecord)]] = [:]
        for pair in joined { versions[pair.record.version, default: []].append(pair) }
        var answers: [VersionPerformance] = []
        for (version, pairs) in versions.sorted(by: { $0.key < $1.key }) {
            let (labels, validation) = await info(version)
            answers.append(try measure(pairs, version: version, classLabels: labels, validation: validation))
        }
        return answers
    }

    static func measure(
        _ pairs: [(record: PredictionRecord, feedback: FeedbackRecord)], version: Int, classLabels: [String]?,
        validation: ValidationMetrics?
    ) throws(TernError) -> VersionPerformance {
        var truths: [String] = [], values: [Double] = [], predictedLabels: [String] = [], predictedValues: [Double] = []
        var probabilities: [[Double]] = []
        var mismatched = 0
        var delays: [Double] = []
        for (record, feedback) in pairs {
            let rows = RowScanner.rows(record.outputs)
            guard let truth = try? JSONSerialization.jsonObject(with: Data(feedback.truth.utf8), options: .fragmentsAllowed) else {
                mismatched += 1
                continue
            }
            let perRow: [Any] = (truth as? [Any]) ?? [truth]
            guard perRow.count == rows.count else { mismatched += 1; continue }
            delays.append(Double(feedback.received - record.time) / 1000)
            for (row, actual) in zip(rows, perRow) {
                let scalars = row.filter { !$0.1.hasPrefix("[") && !$0.1.hasPrefix("{") }
                let arrays = row.filter { $0.1.hasPrefix("[") }
                if let label = scalars.first(where: { $0.0 == "label" }) ?? (arrays.isEmpty ? nil : scalars.first) {
                    truths.append(Self.label(actual))
                    predictedLabels.append(Self.label(Self.json(label.1)))
                    if let scores = arrays.first.flatMap({ Self.json($0.1) as? [Any] })?.compactMap({ ($0 as? NSNumber)?.doubleValue }) {
                        probabilities.append(scores)
                    }
                } else if let value = scalars.first.flatMap({ Double($0.1) }), let number = (actual as? NSNumber)?.doubleValue {
                    values.append(number)
                    predictedValues.append(value)
                } else {
                    mismatched += 1
                }
            }
        }
        var performance = VersionPerformance(
            version: version, predictions: pairs.count - mismatched, rows: max(truths.count, values.count), mismatched: mismatched,
            labelDelaySecondsMedian: delays.isEmpty ? nil : delays.sorted()[delays.count / 2], validation: validation)
        if !truths.isEmpty {
            let classes = classLabels ?? Array(Set(truths + predictedLabels)).sorted()
            let usable = probabilities.count == truths.count && probabilities.allSatisfy { $0.count == classes.count }
            performance.live = try ValidationMetrics.classification(
                truth: truths, predicted: predictedLabels, probabilities: usable ? probabilities : nil, classes: classes,
                labelColumn: "feedback")
        } else if !values.isEmpty {
            performance.live = ValidationMetrics.regression(truth: values, predicted: predictedValues, labelColumn: "feedback")
        }
        return performance
    }

    static func json(_ text: String) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)
    }

    /// A class label as text: integral numbers without a fraction ("1", not "1.0").
    static func label(_ value: Any?) -> String {
        if let number = value as? NSNumber {
            let double = number.doubleValue
            if double.rounded() == double, abs(double) < 1e15 { return String(Int64(double)) }
            return "\(double)"
        }
        if let text = value as? String { return text }
        return "\(value ?? "")"
    }
}

/// Feedback as clients send it.
enum FeedbackParser {
    static let maxItems = 100_000

    static func json(_ data: Data, received: Int64) throws(TernError) -> [FeedbackRecord] {
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
            return FeedbackRecord(requestID: requestID, truth: truth, time: try Self.time(object["time"], item: index) ?? received, received: received)
        }
    }

    static func csv(_ text: String, received: Int64) throws(TernError) -> [FeedbackRecord] {
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
                LineLogHandler.append(row[labelColumn], to: &quoted)
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
            throw .invalidArgument("feedback item \(item): " + (value != nil
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
        if let number = value as? NSNumber, number.doubleValue.isFinite { return Int64(number.doubleValue) }
        throw .invalidArgument("feedback item \(item): time must be an RFC 3339 time or milliseconds since the epoch")
    }
}
