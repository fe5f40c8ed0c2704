import Foundation
import SwiftProtobuf
import TernCore
import TernONNX

/// A pipeline explained exactly: the ONNX graph is preprocessing (one-hot encoders, scalers, imputers,
/// concatenations, casts …) feeding a tree ensemble or a linear model. The ensemble is explained in its own
/// feature space, on rows the model's own preprocessing transformed (ONNX Runtime runs the graph cut at the
/// ensemble's input), and each source column gets the sum of the attributions of the features derived from
/// it: what a shap user does with `TreeExplainer(model, data=pre.transform(background))`, grouped.
///
/// Which feature comes from which column is read from the graph: every operator between the inputs and the
/// ensemble is followed feature by feature (the widths measured by running the cut graph once). An operator
/// that mixes columns into one feature (a normalizer, a matrix product, one not known here) makes the
/// grouping inexact; then `read` throws saying so, and KernelSHAP over the columns applies instead.
package final class Preprocessing: Sendable {
    /// The ensemble or linear model, in its own feature space.
    package let structure: ModelStructure
    /// Each of the ensemble's features' source column (nil: a constant feature, which no column moves).
    package let owners: [Int?]
    package let columns: SourceColumns
    private let model: ONNXModel
    private let output: String

    init(structure: ModelStructure, owners: [Int?], columns: SourceColumns, model: ONNXModel, output: String) {
        self.structure = structure
        self.owners = owners
        self.columns = columns
        self.model = model
        self.output = output
    }

    /// The ensemble's feature rows for source rows: the model's own preprocessing, run by ONNX Runtime.
    package func transform(_ rows: [[Cell]]) async throws -> [[Double]] {
        guard !rows.isEmpty else { return [] }
        let width = structure.featureCount
        var out: [[Double]] = []
        out.reserveCapacity(rows.count)
        var start = 0
        while start < rows.count {
            let chunk = Array(rows[start..<min(rows.count, start + 4096)])
            let answer = try await model.run(inputs: try columns.tensors(chunk), outputs: [output])
            let values = try Self.doubles(answer[0])
            guard values.count == chunk.count * width else {
                throw TernError.internalError("the preprocessing answered \(values.count) values for \(chunk.count) rows of \(width) features")
            }
            for r in 0..<chunk.count { out.append(Array(values[(r * width)..<((r + 1) * width)])) }
            start += chunk.count
        }
        return out
    }

    /// Attributions over the ensemble's features summed per source column (base and margins unchanged).
    package func grouped(_ attributions: Attributions) -> Attributions {
        let k = attributions.outputs, c = columns.count
        var result = attributions
        result.featureCount = c
        result.values = attributions.values.map { row in
            var sums = [Double](repeating: 0, count: c * k)
            for (feature, owner) in owners.enumerated() {
                guard let owner else { continue }
                for o in 0..<k { sums[owner * k + o] += row[feature * k + o] }
            }
            return sums
        }
        result.errors = nil
        return result
    }

    static func doubles(_ tensor: Tensor) throws(TernError) -> [Double] {
        if let floats = tensor.values(as: Float.self) { return floats.map(Double.init) }
        if let doubles = tensor.values(as: Double.self) { return doubles }
        if let ints = tensor.values(as: Int64.self) { return ints.map(Double.init) }
        if let ints = tensor.values(as: Int32.self) { return ints.map(Double.init) }
        throw .invalidArgument("the ensemble's input '\(tensor.name)' is \(tensor.datatype.rawValue), not numbers")
    }

    // MARK: - Reading the graph

    /// Reads the graph of `onnx`: the explained node, the cut before it, and each feature's source column.
    /// `probe`: a few source rows to measure the widths on (background rows). `load` loads an ONNX file.
    package static func read(
        onnx data: Data, columns: SourceColumns, probe: [[Cell]], load: (String) throws(TernError) -> ONNXModel
    ) async throws -> Preprocessing {
        let model: Tern_Onnx_ModelProto
        do {
            model = try Tern_Onnx_ModelProto(serializedBytes: data)
        } catch {
            throw TernError.invalidArgument("not an ONNX model: \(error)")
        }
        let graph = model.graph
        guard let explained = graph.node.firstIndex(where: { Self.explainedOps.contains($0.opType) && $0.domain == "ai.onnx.ml" }) else {
            throw TernError.invalidArgument(
                "no exact explainer for this model: its graph has no TreeEnsembleClassifier/Regressor or LinearClassifier/Regressor")
        }
        let node = graph.node[explained]
        guard let target = node.input.first else { throw TernError.invalidArgument("\(node.opType) has no input") }
        guard !probe.isEmpty else { throw TernError.invalidArgument("reading the preprocessing needs background rows") }

        // The nodes the ensemble's input depends on, in graph order.
        var producer: [String: Int] = [:]
        for (i, n) in graph.node.enumerated() where i < explained { for output in n.output { producer[output] = i } }
        var needed = Set<Int>(), stack = [target]
        while let name = stack.popLast() {
            guard let i = producer[name], needed.insert(i).inserted else { continue }
            stack += graph.node[i].input.filter { !$0.isEmpty }
        }
        let ancestors = needed.sorted()
        let intermediate = ancestors.flatMap { graph.node[$0].output }.filter { !$0.isEmpty }

        // Run the cut graph once with every intermediate tensor as an output, on an unusual row count (so
        // that no constant's first dimension reads as the batch).
        let rows = 7
        let probeRows = (0..<rows).map { probe[$0 % probe.count] }
        let measured = try cut(model, outputs: intermediate, load: load)
        let answers = try await measured.run(inputs: try columns.tensors(probeRows), outputs: intermediate)
        var shapes: [String: [Int]] = [:]
        for (name, tensor) in zip(intermediate, answers) { shapes[name] = tensor.shape }
        for (spec, width) in zip(columns.inputs, columns.widths) { shapes[spec.name] = [rows, width] }

        // Each tensor's features' source columns, operator by operator. nil: constant (no batch dimension).
        var sources: [String: [Set<Int>]] = [:]
        var offset = 0
        for (i, spec) in columns.inputs.enumerated() {
            sources[spec.name] = (0..<columns.widths[i]).map { [offset + $0] }
            offset += columns.widths[i]
        }
        let initializers = Dictionary(graph.initializer.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var constants: [String: Tern_Onnx_TensorProto] = initializers
        for index in ancestors {
            let n = graph.node[index]
            if n.opType == "Constant", n.domain.isEmpty, let value = n.attribute.first(where: { $0.name == "value" })?.t, let out = n.output.first {
                constants[out] = value
                continue
            }
            let inputs: [[Set<Int>]?] = n.input.map { name in
                guard !name.isEmpty, constants[name] == nil, let shape = shapes[name], shape.first == rows else { return nil }
                return sources[name]
            }
            for output in n.output where !output.isEmpty {
                guard let shape = shapes[output], shape.first == rows else { continue }
                let width = shape.dropFirst().reduce(1, *)
                sources[output] = Self.follow(n, inputs: inputs, width: width, shapes: n.input.map { shapes[$0] }, constants: constants)
            }
        }
        guard let features = sources[target] else {
            throw TernError.invalidArgument("the ensemble's input '\(target)' does not depend on the model's inputs row by row")
        }
        let structure: ModelStructure
        switch node.opType {
        case "TreeEnsembleClassifier", "TreeEnsembleRegressor": structure = .trees(try TreeEnsemble(node: node, featureCount: features.count))
        default: structure = .linear(try LinearModel(node: node, featureCount: features.count))
        }
        guard structure.featureCount == features.count else {
            throw TernError.invalidArgument(
                "the \(node.opType) reads \(structure.featureCount) features; the preprocessing makes \(features.count)")
        }
        var owners: [Int?] = []
        for (f, set) in features.enumerated() {
            guard set.count <= 1 else {
                let names = set.sorted().map { columns.names[$0] }
                throw TernError.invalidArgument(
                    "feature \(f) of the \(node.opType) mixes the columns \(Echo.clip(names.joined(separator: ", "))), so its "
                        + "attribution cannot be given to one column")
            }
            owners.append(set.first)
        }
        let transform = try cut(model, outputs: [target], load: load)
        return Preprocessing(structure: structure, owners: owners, columns: columns, model: transform, output: target)
    }

    static let explainedOps: Set<String> = ["TreeEnsembleClassifier", "TreeEnsembleRegressor", "LinearClassifier", "LinearRegressor"]

    /// Operators whose every output feature is its input's feature at the same place (values change, the
    /// layout does not).
    static let featureWise: Set<String> = [
        "Cast", "CastLike", "Identity", "Scaler", "Imputer", "Binarizer", "LabelEncoder", "Abs", "Neg", "Relu", "Sigmoid", "Exp",
        "Log", "Sqrt", "Floor", "Ceil", "Round", "Clip", "Not", "IsNaN", "IsInf", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
        "Sign", "Reciprocal", "Tanh",
    ]
    /// Element-wise operators of several operands (broadcasting).
    static let elementWise: Set<String> = [
        "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual",
        "And", "Or", "Xor", "Where", "Mod",
    ]

    /// The source columns of each feature of an output of `node`.
    static func follow(
        _ node: Tern_Onnx_NodeProto, inputs: [[Set<Int>]?], width: Int, shapes: [[Int]?], constants: [String: Tern_Onnx_TensorProto]
    ) -> [Set<Int>] {
        let all = inputs.compactMap { $0 }.reduce(into: Set<Int>()) { $0.formUnion($1.reduce(into: Set<Int>()) { $0.formUnion($1) }) }
        let mixed = [Set<Int>](repeating: all, count: width)
        let first = inputs.first ?? nil
        switch node.opType {
        case let op where featureWise.contains(op):
            guard let first, first.count == width else { return mixed }
            return first
        case let op where elementWise.contains(op):
            var out = [Set<Int>](repeating: [], count: width)
            for input in inputs {
                guard let input else { continue }
                if input.count == width {
                    for j in 0..<width { out[j].formUnion(input[j]) }
                } else if input.count == 1 {
                    for j in 0..<width { out[j].formUnion(input[0]) }
                } else {
                    return mixed
                }
            }
            return out
        case "OneHotEncoder":
            guard let first, !first.isEmpty, width % first.count == 0 else { return mixed }
            let k = width / first.count
            return (0..<width).map { first[$0 / k] }
        case "Concat", "FeatureVectorizer":
            var out: [Set<Int>] = []
            for (input, shape) in zip(inputs, shapes) {
                guard let input, let shape else { return mixed }
                if node.opType == "Concat" {
                    // Concatenating the flattened features is right when nothing sits between the batch and the axis.
                    let axisValue = node.attribute.first { $0.name == "axis" }?.i ?? 1
                    let axis = axisValue < 0 ? shape.count + Int(axisValue) : Int(axisValue)
                    guard axis >= 1, shape[1..<min(axis, shape.count)].reduce(1, *) == 1 else { return mixed }
                }
                out += input
            }
            return out.count == width ? out : mixed
        case "ArrayFeatureExtractor", "Gather":
            guard let first, node.input.count > 1, let indices = constants[node.input[1]].flatMap(integers) else { return mixed }
            if node.opType == "Gather" {
                let axis = node.attribute.first { $0.name == "axis" }?.i ?? 0
                guard axis == 1 || axis == -1 else { return mixed }
            }
            let out = indices.map { index in index >= 0 && index < first.count ? first[index] : all }
            return out.count == width ? out : mixed
        default:
            return mixed
        }
    }

    static func integers(_ tensor: Tern_Onnx_TensorProto) -> [Int]? {
        if !tensor.int64Data.isEmpty { return tensor.int64Data.map(Int.init) }
        if !tensor.int32Data.isEmpty { return tensor.int32Data.map(Int.init) }
        let raw = tensor.rawData
        switch tensor.dataType {
        case 7:
            return stride(from: 0, to: raw.count - raw.count % 8, by: 8).map { at in
                Int(Int64(littleEndian: raw.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: Int64.self) }))
            }
        case 6:
            return stride(from: 0, to: raw.count - raw.count % 4, by: 4).map { at in
                Int(Int32(littleEndian: raw.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: Int32.self) }))
            }
        default: return nil
        }
    }

    /// The model with its outputs replaced by `outputs` (names only; ONNX Runtime infers their types), loaded.
    static func cut(_ model: Tern_Onnx_ModelProto, outputs: [String], load: (String) throws(TernError) -> ONNXModel) throws -> ONNXModel {
        var copy = model
        copy.graph.output = outputs.map { name in
            var value = Tern_Onnx_ValueInfoProto()
            value.name = name
            return value
        }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tern-cut-\(UUID().uuidString).onnx").path
        try copy.serializedData().write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try load(path)
    }
}
