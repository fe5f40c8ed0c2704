import TernCore

/// How a CSV header meets a model: which columns feed which input, which are copied to the output, and
/// which outputs are written under which column names.
public struct BatchPlan: Sendable {
    public enum Feed: Sendable {
        /// One `[rows, features]` input: each feature's column, in the model's order.
        case matrix(input: TensorSpec, columns: [Int])
        /// An input per column (`[rows]` or `[rows, 1]`).
        case columns([(input: TensorSpec, column: Int)])
    }

    public var feed: Feed
    public var header: [String]
    /// Columns copied to the output before the predictions: the id column, then the passthrough ones.
    public var copied: [Int]
    /// The model outputs written, in order.
    public var outputs: [TensorSpec]

    /// Matches `header` to the model: by feature name (or input name) when the header names them all, else
    /// in order when it has exactly as many columns as the model has features. Columns named by
    /// `idColumn` and `passthrough` must exist; `outputs` must be the model's (empty: all).
    public init(
        signature: ModelSignature, featureNames: [String]?, header: [String], idColumn: String?, passthrough: [String],
        outputs wanted: [String]
    ) throws(TernError) {
        self.header = header
        func column(_ name: String, _ what: String) throws(TernError) -> Int {
            guard let index = header.firstIndex(of: name) else {
                throw .invalidArgument(
                    "the input has no column '\(Echo.clip(name))' (\(what)); its columns: \(Echo.clip(header.joined(separator: ", ")))")
            }
            return index
        }
        copied =
            try (idColumn.map { [$0] } ?? []).map { name throws(TernError) in try column(name, "--id-column") }
            + passthrough.map { name throws(TernError) in try column(name, "--passthrough") }
        let numeric: Set<DataType> = [.fp32, .fp64, .int32, .int64, .int8, .int16, .uint8, .uint16, .uint32, .uint64, .bool, .fp16]
        if signature.inputs.count == 1, let input = signature.inputs.first, input.shape.count == 2, input.shape[1] != 1 {
            guard numeric.contains(input.datatype), input.datatype != .fp16 else {
                throw .invalidArgument("input '\(input.name)' is \(input.datatype.rawValue); tern batch feeds numbers from a table")
            }
            let width = input.shape[1]
            if let featureNames, width < 0 || featureNames.count == width, Set(featureNames).isSubset(of: header) {
                feed = .matrix(input: input, columns: featureNames.map { header.firstIndex(of: $0)! })
            } else {
                let unused = Set(copied)
                let candidates = header.indices.filter { !unused.contains($0) }
                guard width < 0 || candidates.count == width else {
                    let names = featureNames.map { ": " + Echo.clip($0.joined(separator: ", ")) } ?? ""
                    throw .invalidArgument(
                        "the input has \(candidates.count) feature columns (\(Echo.clip(candidates.map { header[$0] }.joined(separator: ", ")))); "
                            + "the model takes \(width) features\(names)")
                }
                feed = .matrix(input: input, columns: candidates)
            }
        } else {
            var pairs: [(input: TensorSpec, column: Int)] = []
            for input in signature.inputs {
                guard input.shape.count <= 2, input.shape.count == 1 || input.shape[1] == 1 || input.shape[1] < 0 else {
                    throw .invalidArgument("input '\(input.name)' has shape \(input.shape); tern batch feeds one column per input")
                }
                pairs.append((input, try column(input.name, "the model's input")))
            }
            feed = .columns(pairs)
        }
        if wanted.isEmpty {
            outputs = signature.outputs
        } else {
            outputs = try wanted.map { name throws(TernError) in
                guard let spec = signature.output(named: name) else {
                    throw .invalidArgument(
                        "the model has no output '\(Echo.clip(name))'; its outputs: \(signature.outputs.map(\.name).joined(separator: ", "))")
                }
                return spec
            }
        }
        for output in outputs where output.shape.count > 2 {
            throw .invalidArgument("output '\(output.name)' has shape \(output.shape); tern batch writes [rows] or [rows, columns] outputs")
        }
    }

    /// Columns each output fills per row; learnt from a first run for outputs of unknown width.
    public func outputHeader(widths: [Int], labels: [String]?) -> [String] {
        var names = copied.map { header[$0] }
        for (output, width) in zip(outputs, widths) {
            if width == 1 {
                names.append(output.name)
            } else if let labels, labels.count == width {
                names += labels.map { "\(output.name)_\($0)" }
            } else {
                names += (0..<width).map { "\(output.name)_\($0)" }
            }
        }
        return names
    }
}
