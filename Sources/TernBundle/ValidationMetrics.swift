import Foundation
import TernCore

/// How the model did on a holdout set, computed by `tern pack` as scikit-learn computes it.
///
/// Classification with two classes reports precision, recall and F1 for the positive class (the second
/// of `classes`, scikit-learn's `average="binary"`); with more, their macro averages. ROC AUC is
/// one-vs-rest, macro-averaged, for more than two classes.
public struct ValidationMetrics: Codable, Sendable, Equatable {
    public var task: String
    public var rows: Int
    public var labelColumn: String
    public var classes: [String]?
    public var averaging: String?
    public var accuracy: Double?
    public var precision: Double?
    public var recall: Double?
    public var f1: Double?
    public var rocAuc: Double?
    public var logLoss: Double?
    /// Rows: true class; columns: predicted class; both in `classes` order.
    public var confusionMatrix: [[Int]]?
    public var mae: Double?
    public var rmse: Double?
    public var r2: Double?

    enum CodingKeys: String, CodingKey {
        case task, rows, classes, averaging, accuracy, precision, recall, f1, mae, rmse, r2
        case labelColumn = "label_column"
        case rocAuc = "roc_auc"
        case logLoss = "log_loss"
        case confusionMatrix = "confusion_matrix"
    }

    /// The metrics' names, as the metrics file and ``value(named:)`` spell them.
    public static let names: Set<String> = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "mae", "rmse", "r2"]

    /// A metric by its name in the metrics file (`accuracy`, `roc_auc`, `rmse`, ...); nil when not measured.
    public func value(named name: String) -> Double? {
        switch name {
        case "accuracy": accuracy
        case "precision": precision
        case "recall": recall
        case "f1": f1
        case "roc_auc": rocAuc
        case "log_loss": logLoss
        case "mae": mae
        case "rmse": rmse
        case "r2": r2
        default: nil
        }
    }

    /// Classification metrics. `probabilities[i]` holds row i's probability per class, in `classes` order.
    ///
    /// - Throws: ``TernError`` `invalidArgument` when a true label is not among `classes` or the
    ///   probability rows do not have one value per class.
    public static func classification(
        truth: [String], predicted: [String], probabilities: [[Double]]?, classes: [String], labelColumn: String
    ) throws(TernError) -> ValidationMetrics {
        precondition(truth.count == predicted.count)
        let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
        var matrix = [[Int]](repeating: [Int](repeating: 0, count: classes.count), count: classes.count)
        for (row, (actual, guess)) in zip(truth, predicted).enumerated() {
            guard let t = index[actual] else {
                throw .invalidArgument(
                    "holdout row \(row + 1): label '\(actual)' is not one of the model's classes ("
                        + classes.joined(separator: ", ") + ")")
            }
            guard let p = index[guess] else {
                throw .invalidArgument("the model predicted '\(guess)', which is not one of the classes (\(classes.joined(separator: ", ")))")
            }
            matrix[t][p] += 1
        }
        var metrics = ValidationMetrics(task: "classification", rows: truth.count, labelColumn: labelColumn)
        metrics.classes = classes
        metrics.confusionMatrix = matrix
        let n = Double(truth.count)
        metrics.accuracy = Double(classes.indices.reduce(0) { $0 + matrix[$1][$1] }) / n
        func scores(_ c: Int) -> (precision: Double, recall: Double, f1: Double) {
            let tp = Double(matrix[c][c])
            let predictedCount = Double(classes.indices.reduce(0) { $0 + matrix[$1][c] })
            let actualCount = Double(matrix[c].reduce(0, +))
            let precision = predictedCount > 0 ? tp / predictedCount : 0
            let recall = actualCount > 0 ? tp / actualCount : 0
            let f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
            return (precision, recall, f1)
        }
        if classes.count == 2 {
            let positive = scores(1)
            metrics.averaging = "binary (positive class '\(classes[1])')"
            (metrics.precision, metrics.recall, metrics.f1) = (positive.precision, positive.recall, positive.f1)
        } else {
            let all = classes.indices.map(scores)
            let k = Double(classes.count)
            metrics.averaging = "macro"
            metrics.precision = all.reduce(0) { $0 + $1.precision } / k
            metrics.recall = all.reduce(0) { $0 + $1.recall } / k
            metrics.f1 = all.reduce(0) { $0 + $1.f1 } / k
        }
        if let probabilities {
            guard probabilities.count == truth.count, probabilities.allSatisfy({ $0.count == classes.count }) else {
                throw .invalidArgument("the model's probabilities do not have one column per class (\(classes.count))")
            }
            let labels = truth.map { index[$0]! }
            metrics.logLoss = logLoss(labels: labels, probabilities: probabilities)
            if classes.count == 2 {
                metrics.rocAuc = rocAUC(positive: labels.map { $0 == 1 }, scores: probabilities.map { $0[1] })
            } else {
                let perClass = classes.indices.compactMap { c in
                    rocAUC(positive: labels.map { $0 == c }, scores: probabilities.map { $0[c] })
                }
                metrics.rocAuc = perClass.count == classes.count ? perClass.reduce(0, +) / Double(classes.count) : nil
            }
        }
        return metrics
    }

    public static func regression(truth: [Double], predicted: [Double], labelColumn: String) -> ValidationMetrics {
        precondition(truth.count == predicted.count && !truth.isEmpty)
        let n = Double(truth.count)
        var metrics = ValidationMetrics(task: "regression", rows: truth.count, labelColumn: labelColumn)
        let errors = zip(truth, predicted).map { $0 - $1 }
        metrics.mae = errors.reduce(0) { $0 + abs($1) } / n
        let sse = errors.reduce(0) { $0 + $1 * $1 }
        metrics.rmse = (sse / n).squareRoot()
        let mean = truth.reduce(0, +) / n
        let sst = truth.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        metrics.r2 = sst > 0 ? 1 - sse / sst : nil
        return metrics
    }

    init(task: String, rows: Int, labelColumn: String) {
        self.task = task
        self.rows = rows
        self.labelColumn = labelColumn
    }

    /// Area under the ROC curve via the rank statistic (ties get their average rank); nil with one class only.
    static func rocAUC(positive: [Bool], scores: [Double]) -> Double? {
        let positives = positive.filter { $0 }.count
        let negatives = positive.count - positives
        guard positives > 0, negatives > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var rankSum = 0.0
        var start = 0
        while start < order.count {
            var end = start
            while end + 1 < order.count, scores[order[end + 1]] == scores[order[start]] { end += 1 }
            let rank = Double(start + end + 2) / 2
            for k in start...end where positive[order[k]] { rankSum += rank }
            start = end + 1
        }
        let p = Double(positives)
        return (rankSum - p * (p + 1) / 2) / (p * Double(negatives))
    }

    /// Mean negative log-likelihood of the true class, probabilities clipped to [eps, 1 - eps].
    static func logLoss(labels: [Int], probabilities: [[Double]]) -> Double {
        let eps = Double.ulpOfOne
        var total = 0.0
        for (label, row) in zip(labels, probabilities) {
            total -= log(min(max(row[label], eps), 1 - eps))
        }
        return total / Double(labels.count)
    }
}
