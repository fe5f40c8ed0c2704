import Foundation
import TernBundle
import TernCodecs
import TernCore
import TernModels
import TernMonitoring

/// Scores a model's outputs on labelled rows as scikit-learn does: what `tern pack --holdout` records and
/// the validation gate compares.
public enum HoldoutScoring {
    /// Scores the holdout; returns the class list used (given, or the labels seen, sorted).
    public static func score(
        task: String?, truth: [String], outputs: ModelOutputs, classes: [String]?, labelColumn: String, source: String
    ) throws(TernError) -> (ValidationMetrics, [String]?) {
        switch task {
        case "classification":
            guard let labels = outputs.labels?.labels else {
                throw .invalidArgument("the model has no label output (an integer or string output with one value per row) to score as a classifier")
            }
            let probabilities = outputs.probabilities?.scores
            let given = classes
            let classes = classes ?? Self.sortedClasses(Set(truth).union(labels))
            if let width = probabilities?.first?.count, width != classes.count {
                throw .invalidArgument(
                    "the model has \(width) probability columns but \(classes.count) classes were found ("
                        + classes.joined(separator: ", ") + "); name them, in the model's order, with --class-labels")
            }
            do {
                let metrics = try ValidationMetrics.classification(
                    truth: truth.map { $0.trimmingCharacters(in: .whitespaces) }, predicted: labels,
                    probabilities: probabilities, classes: classes, labelColumn: labelColumn)
                return (metrics, classes)
            } catch  where given != nil {
                throw .invalidArgument(
                    "\(error.message) (--class-labels lists the label values as the data and the "
                        + "model write them, in the order of the probability columns)")
            }
        case "regression":
            guard let predicted = outputs.regression?.scores?.map({ $0[0] }) else {
                throw .invalidArgument("the model has no single-valued numeric output to score as a regressor")
            }
            var numbers: [Double] = []
            for (row, text) in truth.enumerated() {
                guard let value = Double(text.trimmingCharacters(in: .whitespaces)) else {
                    throw .invalidArgument("\(source) row \(row + 1): label '\(text)' is not a number")
                }
                numbers.append(value)
            }
            return (ValidationMetrics.regression(truth: numbers, predicted: predicted, labelColumn: labelColumn), nil)
        default:
            throw .invalidArgument("cannot tell whether the model classifies or regresses; say so with --task")
        }
    }

    /// Integer labels sort numerically, others as text: scikit-learn's `classes_` order.
    public static func sortedClasses(_ labels: Set<String>) -> [String] {
        let trimmed = Set(labels.map { $0.trimmingCharacters(in: .whitespaces) })
        if trimmed.allSatisfy({ Int64($0) != nil }) { return trimmed.sorted { Int64($0)! < Int64($1)! } }
        return trimmed.sorted()
    }

}

/// Runs a model over a table's rows, in blocks (at most the config's max_batch_size rows), collecting its outputs.
public struct TableRunner: Sendable {
    public let served: ServedModel
    /// Told the rows done and the rows in all after each block (for progress lines).
    public var progress: (@Sendable (_ done: Int, _ total: Int) -> Void)?

    public init(served: ServedModel) { self.served = served }
    private let service = InferenceService()
    private var block: Int { served.config.maxBatchSize > 0 ? served.config.maxBatchSize : 4096 }

    public func run(_ table: CSVTable, source: String) async throws -> ModelOutputs {
        do {
            return try await run(table)
        } catch let error as TernError where error.code == .invalidArgument {
            throw TernError.invalidArgument("\(source): \(error.message) (a label column is left out with --label-column)")
        }
    }

    private func run(_ table: CSVTable) async throws -> ModelOutputs {
        var outputs = ModelOutputs()
        var start = 0
        while start < table.rows.count {
            let rows = Array(table.rows[start..<min(start + block, table.rows.count)])
            let request = try TabularInput.request(
                columns: table.columns, rows: rows, signature: served.model.signature, featureNames: served.featureNames)
            try outputs.append(try await service.infer(served, request: request).outputs, rows: rows.count)
            start += rows.count
            progress?(start, table.rows.count)
        }
        return outputs
    }
}
