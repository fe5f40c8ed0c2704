import TernCore

/// A model's outputs over many rows, read the way scikit-learn-style models lay them out: an integer or
/// string output with one value per row is the predicted label; a float output is a score per row
/// (`[rows]`, `[rows, 1]`) or per class (`[rows, classes]`).
public struct ModelOutputs: Sendable {
    public struct Column: Sendable {
        public var name: String
        /// Labels, as text (integers printed as integers).
        public var labels: [String]?
        /// Scores: one row per input row, one value per class (or one value).
        public var scores: [[Double]]?
    }

    public private(set) var columns: [Column] = []
    public private(set) var rows = 0

    public init() {}

    /// Appends the outputs of a run over `rows` rows.
    public mutating func append(_ outputs: [Tensor], rows count: Int) throws(TernError) {
        if columns.isEmpty {
            columns = outputs.map { Column(name: $0.name) }
        }
        for (index, tensor) in outputs.enumerated() {
            guard index < columns.count, columns[index].name == tensor.name else {
                throw .internalError("the model's outputs changed between runs")
            }
            if let labels = Self.labels(tensor), labels.count == count {
                columns[index].labels = columns[index].labels ?? []
                columns[index].labels!.append(contentsOf: labels)
            } else if let values = Self.doubles(tensor), count > 0, values.count % count == 0 {
                let width = values.count / count
                let block = (0..<count).map { Array(values[($0 * width)..<(($0 + 1) * width)]) }
                columns[index].scores = columns[index].scores ?? []
                columns[index].scores!.append(contentsOf: block)
            }
        }
        rows += count
    }

    /// The first label output: what a classifier predicts.
    public var labels: Column? { columns.first { $0.labels != nil } }

    /// The first score output with more than one column: a classifier's probabilities.
    public var probabilities: Column? { columns.first { ($0.scores?.first?.count ?? 0) > 1 } }

    /// The first single-valued score output: a regressor's prediction.
    public var regression: Column? { columns.first { $0.scores?.first?.count == 1 } }

    /// `classification` if the model predicts labels, else `regression` if it predicts one number per row.
    public var inferredTask: String? {
        if labels != nil { return "classification" }
        if regression != nil { return "regression" }
        return nil
    }

    /// Distributions of the outputs, for the reference profile: labels as categories, each score column as
    /// a number (`probabilities[yes]`, or `probabilities[1]` without class names).
    /// The outputs as table columns: a label column by its name, each score by `name[index]`
    /// (`probabilities[1]`), as the prediction log's outputs flatten.
    public func table() -> (columns: [String], rows: [[String]]) {
        var columns: [String] = []
        var values: [[String]] = []
        for column in self.columns {
            if let labels = column.labels {
                columns.append(column.name)
                values.append(labels)
            } else if let scores = column.scores, let width = scores.first?.count {
                for c in 0..<width {
                    columns.append(width == 1 ? column.name : "\(column.name)[\(c)]")
                    values.append(scores.map { "\($0[c])" })
                }
            }
        }
        let rows = (0..<self.rows).map { row in values.map { $0[row] } }
        return (columns, rows)
    }

    public func profiles(classLabels: [String]?) -> [FeatureProfile] {
        var profiles: [FeatureProfile] = []
        for column in columns {
            if let labels = column.labels {
                profiles.append(FeatureProfile(name: column.name, categories: labels))
            } else if let scores = column.scores, let width = scores.first?.count {
                if width == 1 {
                    profiles.append(FeatureProfile(name: column.name, numbers: scores.map { $0[0] }))
                    continue
                }
                for c in 0..<width {
                    let label = classLabels.flatMap { $0.count == width ? $0[c] : nil } ?? String(c)
                    profiles.append(FeatureProfile(name: "\(column.name)[\(label)]", numbers: scores.map { $0[c] }))
                }
            }
        }
        return profiles
    }

    static func labels(_ tensor: Tensor) -> [String]? {
        switch tensor.datatype {
        case .bytes: tensor.strings
        case .int64: tensor.values(as: Int64.self)?.map { String($0) }
        case .int32: tensor.values(as: Int32.self)?.map { String($0) }
        case .bool: tensor.values(as: Bool.self)?.map { $0 ? "1" : "0" }
        default: nil
        }
    }

    static func doubles(_ tensor: Tensor) -> [Double]? {
        switch tensor.datatype {
        case .fp32: tensor.values(as: Float.self)?.map(Double.init)
        case .fp64: tensor.values(as: Double.self)
        default: nil
        }
    }
}
