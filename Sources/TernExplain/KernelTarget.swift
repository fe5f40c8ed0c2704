import TernCore

/// A model as KernelSHAP runs it: one numeric `[rows, features]` input, and every floating-point output
/// explained (a classifier's probabilities, a regressor's value, a network's scores; labels are left out).
public struct KernelTarget: Sendable {
    public let model: any InferenceModel
    public let input: TensorSpec
    /// The explained outputs and how many columns each has per row.
    public let outputs: [(name: String, columns: Int)]
    public let featureCount: Int

    /// Checks the signature and learns each output's width by running `probe` (one row of features).
    public init(model: any InferenceModel, probe: [Double]) async throws {
        let signature = model.signature
        guard signature.inputs.count == 1, let input = signature.inputs.first else {
            throw TernError.invalidArgument(
                "KernelSHAP explains a model with one [rows, features] input; this one has "
                    + "\(signature.inputs.count): \(signature.inputs.map(\.name).joined(separator: ", "))")
        }
        guard input.shape.count == 2, [.fp32, .fp64].contains(input.datatype) else {
            throw TernError.invalidArgument(
                "KernelSHAP explains a model whose input is FP32 or FP64 [rows, features]; "
                    + "'\(input.name)' is \(input.datatype.rawValue) \(input.shape)")
        }
        let explained = signature.outputs.filter { [.fp32, .fp64].contains($0.datatype) }
        guard !explained.isEmpty else {
            throw TernError.invalidArgument(
                "KernelSHAP explains floating-point outputs; this model's outputs are "
                    + signature.outputs.map { "\($0.name) (\($0.datatype.rawValue))" }.joined(separator: ", "))
        }
        let width = input.shape[1] > 0 ? input.shape[1] : probe.count
        guard probe.count == width else {
            throw TernError.invalidArgument("the model takes \(width) features; the background rows have \(probe.count)")
        }
        let answers = try await model.run(inputs: [try Self.tensor(input, probe, rows: 1)], outputs: explained.map(\.name))
        self.model = model
        self.input = input
        self.featureCount = width
        self.outputs = zip(explained, answers).map { spec, tensor in (spec.name, max(1, tensor.elementCount)) }
    }

    /// Each explained column's name: the output's, with `[j]` when it has several.
    public var outputNames: [String] {
        outputs.flatMap { output in output.columns == 1 ? [output.name] : (0..<output.columns).map { "\(output.name)[\($0)]" } }
    }

    public var columns: Int { outputs.reduce(0) { $0 + $1.columns } }

    /// The function KernelSHAP calls: rows in, every explained column of every row out.
    public var predict: KernelSHAP.Predict {
        { [self] rows, count in try await run([try Self.tensor(input, rows, rows: count)], count: count) }
    }

    /// KernelSHAP over a model's source columns (strings included): rows of codes (`codes` turns them
    /// back into cells) become the model's inputs.
    package func predict(columns: SourceColumns, codes: CellCodes) -> KernelSHAP.Predict {
        { [self] rows, count in
            let width = columns.count
            let cells = (0..<count).map { r in codes.decode(rows[(r * width)..<((r + 1) * width)], columns: columns) }
            return try await run(try columns.tensors(cells), count: count)
        }
    }

    /// A model with several inputs (or strings), seen through its source columns: the widths of the explained
    /// outputs learned by running `probe` (one row of cells).
    package init(model: any InferenceModel, columns: SourceColumns, probe: [Cell]) async throws {
        let signature = model.signature
        let explained = signature.outputs.filter { [.fp32, .fp64].contains($0.datatype) }
        guard !explained.isEmpty else {
            throw TernError.invalidArgument(
                "KernelSHAP explains floating-point outputs; this model's outputs are "
                    + signature.outputs.map { "\($0.name) (\($0.datatype.rawValue))" }.joined(separator: ", "))
        }
        let answers = try await model.run(inputs: try columns.tensors([probe]), outputs: explained.map(\.name))
        self.model = model
        self.input = signature.inputs[0]
        self.featureCount = columns.count
        self.outputs = zip(explained, answers).map { spec, tensor in (spec.name, max(1, tensor.elementCount)) }
    }

    private func run(_ inputs: [Tensor], count: Int) async throws -> [Double] {
        let answers = try await model.run(inputs: inputs, outputs: outputs.map(\.name))
        let columns = self.columns
        var flat = [Double](repeating: 0, count: count * columns)
        var offset = 0
        for (tensor, output) in zip(answers, outputs) {
            let values: [Double]
            if let floats = tensor.values(as: Float.self) {
                values = floats.map(Double.init)
            } else if let doubles = tensor.values(as: Double.self) {
                values = doubles
            } else {
                throw TernError.internalError("output '\(output.name)' came back as \(tensor.datatype.rawValue)")
            }
            guard values.count == count * output.columns else {
                throw TernError.internalError("output '\(output.name)' has \(values.count) values for \(count) rows")
            }
            for r in 0..<count {
                for c in 0..<output.columns { flat[r * columns + offset + c] = values[r * output.columns + c] }
            }
            offset += output.columns
        }
        return flat
    }

    static func tensor(_ input: TensorSpec, _ values: [Double], rows: Int) throws(TernError) -> Tensor {
        let shape = [rows, values.count / max(1, rows)]
        if input.datatype == .fp64 { return try Tensor(name: input.name, shape: shape, values: values) }
        return try Tensor(name: input.name, shape: shape, values: values.map { Float($0) })
    }
}
