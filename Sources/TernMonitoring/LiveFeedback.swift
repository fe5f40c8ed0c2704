import Foundation
import NIOCore
import TernBundle
import TernCodecs
import TernCore
import TernModels
import TernRegistry

/// Ground truth joined with the prediction log by request id, and the live quality it gives each version
/// (``LivePerformance``): used by the feedback API, the alert evaluator, the gauges and `tern models show`.
package struct LiveFeedback: Sendable {
    package let log: PredictionLogLocation
    package let reader: PredictionReader
    /// The registry, for the bundle's class labels and validation metrics; nil when serving a folder.
    package let models: RegistryModels?

    package init(log: PredictionLogLocation, reader: PredictionReader, models: RegistryModels?) {
        self.log = log
        self.reader = reader
        self.models = models
    }

    /// Stores feedback; answers the request ids the prediction log does not know (not stored).
    ///
    /// Each item is checked against the prediction it is for before anything is stored: the caller needs a
    /// grant for that prediction's model (403), and a label must be one of the version's classes when its
    /// bundle names them (400). A refused item refuses the whole request: nothing is stored.
    package func add(_ items: [FeedbackRecord], caller: Caller?) async throws -> [String] {
        let store = try await store()
        let targets = try await store.answeredBy(items.map(\.requestID))
        var classes: [String: Set<String>?] = [:]
        for (index, item) in items.enumerated() {
            guard let (model, version) = targets[item.requestID] else { continue }
            if let caller, !caller.mayUse(model: model) {
                throw TernError(
                    .permissionDenied,
                    "feedback item \(index): request id '\(Echo.clip(item.requestID))' was answered by "
                        + "a model \(caller.name) has no grant for")
            }
            let key = "\(model)\u{0}\(version)"
            if classes[key] == nil {
                let labels = (try? await models?.registry.version(model, version))?.manifest.classLabels
                classes[key] = .some(labels.map(Set.init))
            }
            guard let known = classes[key] ?? nil, let truth = LivePerformance.json(item.truth) else { continue }
            for label in ((truth as? [Any]) ?? [truth]).map(LivePerformance.label) where !known.contains(label) {
                throw TernError.invalidArgument(
                    "feedback item \(index): label '\(Echo.clip(label))' is not one of \(model) "
                        + "version \(version)'s classes (\(known.sorted().joined(separator: ", ")))")
            }
        }
        return try await store.addFeedback(items)
    }

    /// Each version's live quality from the predictions with feedback (since a time, or the newest `newest`).
    package func performance(of name: String, since: Int64?, newest: Int?) async throws -> [VersionPerformance] {
        let models = self.models
        return try await LivePerformance.versions(in: try await store(), model: name, since: since, newest: newest) { version in
            guard let models, let record = try? await models.registry.version(name, version) else { return (nil, nil) }
            return (record.manifest.classLabels, record.metrics)
        }
    }

    /// The ground truth of a model's recent predictions by request id, one label per row (for the retraining
    /// command's data).
    package func labels(of model: String) async throws -> [String: [String]] {
        var labels: [String: [String]] = [:]
        for (record, feedback) in try await store().predictionsWithFeedback(model: model, since: nil, limit: 100_000) {
            guard let truth = try? JSONSerialization.jsonObject(with: Data(feedback.truth.utf8), options: .fragmentsAllowed) else { continue }
            labels[record.requestID] = ((truth as? [Any]) ?? [truth]).map { "\($0)" }
        }
        return labels
    }

    private func store() async throws(TernError) -> PredictionStore {
        guard let store = try await reader.store(log) as? PredictionStore else {
            throw TernError.invalidArgument(
                "feedback needs the prediction log in a database (SQLite or PostgreSQL), "
                    + "not in JSON Lines files (--prediction-log)")
        }
        return store
    }
}

public struct PerformanceAnswer: Codable, Sendable {
    public var model: String
    public var versions: [VersionPerformance]

    public init(model: String, versions: [VersionPerformance]) {
        self.model = model
        self.versions = versions
    }
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

    package static func measure(
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
            guard perRow.count == rows.count else {
                mismatched += 1
                continue
            }
            // Feedback stored before labels were checked: a class the version does not have is left out.
            if let classLabels, !perRow.allSatisfy({ classLabels.contains(Self.label($0)) }) {
                mismatched += 1
                continue
            }
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

    package static func json(_ text: String) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)
    }

    /// A class label as text: integral numbers without a fraction ("1", not "1.0").
    package static func label(_ value: Any?) -> String {
        if let number = value as? NSNumber {
            let double = number.doubleValue
            if double.rounded() == double, abs(double) < 1e15 { return String(Int64(double)) }
            return "\(double)"
        }
        if let text = value as? String { return text }
        return "\(value ?? "")"
    }
}
