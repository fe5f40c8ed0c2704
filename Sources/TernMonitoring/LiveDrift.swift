import Foundation
import Synchronization
import TernBundle
import TernCodecs
import TernCore
import TernModels
import TernRegistry
import TernStatistics

/// Live drift: a served version's recent predictions (kept in memory by ``DriftWindows``, else read from the
/// prediction log) against the reference data its bundle carries (the profile's seeded sample). Used by the
/// drift API, the alert evaluator, the drift gauges and the retraining command's data.
package final class LiveDrift: Sendable {
    package let service: InferenceService
    package let models: RegistryModels
    /// The prediction log, when on: windows memory does not hold whole come from it.
    package let log: PredictionLogLocation?
    package let reader: PredictionReader
    /// Each version's newest predictions in memory (the first place a window is read from).
    package let windows: DriftWindows
    /// Reference profiles by version, read once.
    package let references = Mutex<[String: ReferenceProfile]>([:])

    package init(service: InferenceService, models: RegistryModels, log: PredictionLogLocation?, reader: PredictionReader, windows: DriftWindows) {
        self.service = service
        self.models = models
        self.log = log
        self.reader = reader
        self.windows = windows
    }

    /// A version's newest `window` predictions against its reference sample.
    /// With `since` (and `until`), the window is a time range: the version's predictions in it, the first
    /// `window` of them.
    package func drift(of served: ServedModel, window: Int, since: Int64? = nil, until: Int64? = nil) async throws -> DriftAnswer {
        let profile = try await reference(served)
        let records = try await records(of: served, window: window, since: since, until: until)
        var live: [String: [String]] = [:]
        var rows = 0
        for record in records {
            for row in RowScanner.rows(record.inputs) {
                rows += 1
                for (key, value) in row { live[key, default: []].append(Self.cell(value)) }
            }
            // The predictions themselves: `prediction.label`, `prediction.probabilities[1]`, ...
            for row in RowScanner.rows(record.outputs) {
                for (key, value) in row {
                    if value.hasPrefix("["), let list = try? JSONSerialization.jsonObject(with: Data(value.utf8)) as? [Any] {
                        for (index, element) in list.enumerated() { live["prediction.\(key)[\(index)]", default: []].append("\(element)") }
                    } else {
                        live["prediction." + key, default: []].append(Self.cell(value))
                    }
                }
            }
        }
        var reference: [String: [String]] = [:]
        var columns: [String] = []
        for (prefix, sample) in [("", profile.sample)] + (profile.outputSample.map { [("prediction.", $0)] } ?? []) {
            for (index, column) in sample.columns.enumerated() where live[prefix + column] != nil {
                reference[prefix + column] = sample.rows.map { $0[index] }
                columns.append(prefix + column)
            }
        }
        let sample = profile.sample
        // PSI and Jensen-Shannon on the whole reference data's decile bins, where the profile has them.
        var bins: [String: (edges: [Double], counts: [Int])] = [:]
        for (prefix, profiles) in [("", profile.features), ("prediction.", profile.predictions)] {
            for feature in profiles { if let deciles = feature.numeric?.deciles { bins[prefix + feature.name] = (deciles.edges, deciles.counts) } }
        }
        let features =
            records.isEmpty
            ? []
            : DriftReport.compare(
                reference: reference, live: live, columns: columns, referenceBins: bins
            )
            .sorted { ($0.drifted ? 1 : 0, $0.severity) > ($1.drifted ? 1 : 0, $1.severity) }
        return DriftAnswer(
            model: served.name, version: served.version, referenceRows: sample.rows.count, predictions: records.count,
            rows: rows, from: records.first.map { PredictionTime.format($0.time) },
            to: records.last.map { PredictionTime.format($0.time) },
            drifted: features.filter(\.drifted).map(\.feature), features: features)
    }

    /// A version's window: from memory when it holds all of it (or when there is no prediction log), else
    /// from the prediction log.
    package func records(of served: ServedModel, window: Int, since: Int64? = nil, until: Int64? = nil) async throws -> [PredictionRecord] {
        let kept = windows.records(of: served, window: window, since: since, until: until)
        guard !kept.complete, let log else { return kept.records }
        let store = try await reader.store(log)
        guard since != nil || until != nil else {
            return try await store.recent(model: served.name, version: served.version, limit: window).filter { !$0.isExplanation }
        }
        var records: [PredictionRecord] = []
        var after: Int64 = 0
        while records.count < window {
            let page = try await store.records(model: served.name, since: since, until: until, afterID: after, limit: 5_000)
            records += page.map(\.record).filter { $0.version == served.version && !$0.isExplanation }
            guard page.count == 5_000, let last = page.last else { break }
            after = last.id
        }
        return Array(records.prefix(window))
    }

    /// The bundle's reference sample, read from the registry once per version.
    private func reference(_ served: ServedModel) async throws -> ReferenceProfile {
        let key = "\(served.name)@\(served.version)"
        if let profile = references.withLock({ $0[key] }) { return profile }
        let bundle = try ModelBundle(archive: try await models.registry.archive(served.name, served.version))
        guard let profile = try bundle.decoded(ReferenceProfile.self, file: BundleFile.profile) else {
            throw TernError.notFound(
                "\(served.name) v\(served.version) has no reference profile to compare with; "
                    + "pack it with tern pack --reference TRAINING.csv")
        }
        references.withLock { $0[key] = profile }
        return profile
    }

    /// The ground truth's column name in a version's training data (`tern pack --label-column`), if its
    /// bundle says: from its holdout's validation, else its reference data.
    package func labelColumn(of served: ServedModel) async -> String? {
        guard let archive = try? await models.registry.archive(served.name, served.version), let bundle = try? ModelBundle(archive: archive)
        else { return nil }
        if let metrics = try? bundle.decoded(ValidationMetrics.self, file: BundleFile.metrics) { return metrics.labelColumn }
        return (try? bundle.decoded(ReferenceProfile.self, file: BundleFile.profile))?.labelColumn
    }

    /// A JSON value from the prediction log as a CSV cell would hold it.
    package static func cell(_ json: String) -> String {
        if json == "null" { return "" }
        if json.hasPrefix("\""), let text = try? JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed) as? String {
            return text
        }
        return json
    }
}

/// A version's drift, as `GET /api/v1/models/{m}/drift` answers it (snake_case keys).
public struct DriftAnswer: Codable, Sendable {
    public var model: String
    public var version: Int
    /// Rows of the reference sample.
    public var referenceRows: Int
    /// Predictions in the window, and the rows they held.
    public var predictions: Int
    public var rows: Int
    public var from: String?
    public var to: String?
    public var drifted: [String]
    public var features: [FeatureDrift]
}
