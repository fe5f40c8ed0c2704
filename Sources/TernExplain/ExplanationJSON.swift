import Foundation
import TernCore

/// Tabular text rows turned into the numeric rows an explainer takes, columns matched by name.
public enum FeatureRows {
    /// `rows` of `columns` as rows of the model's `width` features: by name when the columns name every
    /// feature (other columns, such as a label, are left out), else in order when there are exactly `width`.
    public static func rows(columns: [String], values: [[String]], featureNames: [String]?, width: Int, what: String) throws(TernError) -> [[Double]]
    {
        let order: [Int]
        if let featureNames, featureNames.count == width, Set(featureNames).isSubset(of: columns) {
            order = featureNames.map { name in columns.firstIndex(of: name)! }
        } else if columns.count == width {
            order = Array(0..<width)
        } else {
            let names = featureNames.map { ": " + $0.joined(separator: ", ") } ?? ""
            throw .invalidArgument(
                "\(what) has \(columns.count) columns (\(Echo.clip(columns.joined(separator: ", ")))); "
                    + "the model takes \(width) features\(names)")
        }
        var rows: [[Double]] = []
        rows.reserveCapacity(values.count)
        for (r, row) in values.enumerated() {
            var numbers = [Double](repeating: 0, count: width)
            for (f, column) in order.enumerated() {
                guard column < row.count else { throw .invalidArgument("\(what) row \(r + 1) has \(row.count) values") }
                let text = row[column].trimmingCharacters(in: .whitespaces)
                if text.isEmpty || text.lowercased() == "nan" {
                    numbers[f] = .nan
                } else if let value = Double(text), value.isFinite {
                    numbers[f] = value
                } else {
                    throw .invalidArgument("\(what) row \(r + 1), column '\(Echo.clip(columns[column]))': '\(Echo.clip(text))' is not a number")
                }
            }
            rows.append(numbers)
        }
        return rows
    }
}

/// The JSON every front-end answers with: attributions per row, feature and output, the base values, each
/// row's margins and the link that turns margins into the model's scores.
public enum ExplanationJSON {
    public static func object(
        _ attributions: Attributions, featureNames: [String]?, outputNames: [String]?
    ) -> [String: Any] {
        let features = featureNames?.count == attributions.featureCount ? featureNames! : (0..<attributions.featureCount).map { "feature_\($0)" }
        let outputs = outputNames?.count == attributions.outputs ? outputNames! : (0..<attributions.outputs).map { "output_\($0)" }
        let rows: [[String: Any]] = attributions.values.indices.map { r in
            var byOutput: [String: Any] = [:]
            for (o, output) in outputs.enumerated() {
                byOutput[output] = (0..<attributions.featureCount).map { f in attributions.value(row: r, feature: f, output: o) }
            }
            var row: [String: Any] = [
                "attributions": byOutput, "margin": attributions.margins[r], "score": score(attributions.margins[r], link: attributions.link),
            ]
            if let errors = attributions.errors?[r] {
                var byOutput: [String: Any] = [:]
                for (o, output) in outputs.enumerated() {
                    byOutput[output] = (0..<attributions.featureCount).map { f in errors[f * attributions.outputs + o] }
                }
                row["standard_errors"] = byOutput
            }
            return row
        }
        return [
            "method": attributions.method.rawValue,
            "link": attributions.link.rawValue,
            "space": space(attributions.link),
            "features": features,
            "outputs": outputs,
            "base_values": attributions.base,
            "rows": rows,
        ]
    }

    /// What the margins are, in words, for the reader of the JSON.
    static func space(_ link: Link) -> String {
        switch link {
        case .identity: "the model's output (regression value or probability)"
        case .logistic: "log-odds: probability = 1 / (1 + exp(-margin))"
        case .softmax: "raw score per class: probabilities = softmax(margins)"
        }
    }

    /// The model's score from its margins (what the model itself outputs).
    public static func score(_ margins: [Double], link: Link) -> [Double] {
        switch link {
        case .identity: return margins
        case .logistic: return margins.map { 1 / (1 + exp(-$0)) }
        case .softmax:
            let top = margins.max() ?? 0
            let e = margins.map { exp($0 - top) }
            let sum = e.reduce(0, +)
            return e.map { $0 / sum }
        }
    }

    /// The names of a model's margin outputs: its class labels (a binary model's one output is its last
    /// class), else `value`.
    public static func outputNames(_ structure: ModelStructure) -> [String] {
        let labels: [String]
        switch structure {
        case .trees(let trees): labels = trees.classLabels
        case .linear(let linear): labels = linear.classLabels
        }
        if labels.isEmpty { return structure.outputs == 1 ? ["value"] : (0..<structure.outputs).map { "output_\($0)" } }
        if structure.outputs == 1 { return ["class " + labels.last!] }
        return labels.map { "class " + $0 }
    }
}

extension FeatureRows {
    /// A `[rows, width]` numeric tensor (a v2 request's input) as rows.
    public static func rows(tensor: Tensor, width: Int) throws(TernError) -> [[Double]] {
        guard tensor.shape.count == 2, tensor.shape[1] == width else {
            throw .invalidArgument("input '\(tensor.name)' has shape \(tensor.shape); explanations take [rows, \(width)]")
        }
        guard case .raw(let bytes) = tensor.contents, let size = tensor.datatype.byteSize, tensor.datatype != .fp16 else {
            throw .invalidArgument("input '\(tensor.name)' is \(tensor.datatype.rawValue); explanations take numbers (FP32, FP64, INT, UINT, BOOL)")
        }
        let count = bytes.count / size
        var values = [Double](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            for i in 0..<count {
                let at = i * size
                values[i] =
                    switch tensor.datatype {
                    case .fp32: Double(Float(bitPattern: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian))
                    case .fp64: Double(bitPattern: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian)
                    case .int8: Double(raw.loadUnaligned(fromByteOffset: at, as: Int8.self))
                    case .int16: Double(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: Int16.self)))
                    case .int32: Double(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: Int32.self)))
                    case .int64: Double(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: Int64.self)))
                    case .uint8, .bool: Double(raw.loadUnaligned(fromByteOffset: at, as: UInt8.self))
                    case .uint16: Double(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt16.self)))
                    case .uint32: Double(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
                    case .uint64: Double(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self)))
                    case .fp16, .bytes: 0
                    }
            }
        }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw .invalidArgument(
                "input '\(tensor.name)' row \(bad / max(width, 1)) feature \(bad % max(width, 1)) is \(values[bad]): "
                    + "explanations take finite numbers")
        }
        return stride(from: 0, to: count, by: width).map { Array(values[$0..<min($0 + width, count)]) }
    }
}
