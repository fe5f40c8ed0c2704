import Foundation
import SwiftProtobuf
import TernCore

/// What an explainer needs to know of a model, read from its ONNX file: a tree ensemble or a linear model
/// fed straight from the model's tabular input, and the number of features that input has.
public enum ModelStructure: Sendable {
    case trees(TreeEnsemble)
    case linear(LinearModel)

    /// The margin outputs (one for a regressor or a binary classifier's log-odds, one per class otherwise).
    public var outputs: Int {
        switch self {
        case .trees(let trees): trees.outputs
        case .linear(let linear): linear.outputs
        }
    }

    public var featureCount: Int {
        switch self {
        case .trees(let trees): trees.featureCount
        case .linear(let linear): linear.featureCount
        }
    }

    /// Whether path-dependent TreeSHAP can run without a sample (the ONNX file holds the trees' covers).
    public var hasCovers: Bool {
        if case .trees(let trees) = self { return trees.covers != nil }
        return false
    }

    /// How the margin becomes the model's score (its `post_transform`).
    public var link: Link {
        switch self {
        case .trees(let trees): trees.link
        case .linear(let linear): linear.link
        }
    }

    /// The `feature_names` the model's metadata lists (comma-separated, as skl2onnx users and `tern pack` write them).
    public static func featureNames(onnx data: Data) -> [String]? {
        var options = BinaryDecodingOptions()
        options.discardUnknownFields = true
        guard let model = try? Tern_Onnx_ModelProto(serializedBytes: data, options: options),
            let text = model.metadataProps.first(where: { $0.key == "feature_names" })?.value, !text.isEmpty
        else { return nil }
        return text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// Reads the structure from an ONNX file's bytes. Throws naming the operator the reader stopped at when
    /// the model is not one it can explain exactly (then only a sampling method applies).
    public static func read(onnx data: Data) throws(TernError) -> ModelStructure {
        let model: Tern_Onnx_ModelProto
        do {
            var options = BinaryDecodingOptions()
            options.discardUnknownFields = true
            model = try Tern_Onnx_ModelProto(serializedBytes: data, options: options)
        } catch {
            throw .invalidArgument("not an ONNX model: \(error)")
        }
        let graph = model.graph
        guard graph.input.count == 1, let input = graph.input.first else {
            throw .invalidArgument("exact explanations need a model with one tabular input; this one has \(graph.input.count) inputs")
        }
        let shape = input.type.tensorType.shape.dim
        let declared = shape.count == 2 && shape[1].dimValue > 0 ? Int(shape[1].dimValue) : nil
        // The explained node must read the input itself (a Cast to float aside).
        var source = input.name
        for node in graph.node {
            guard node.input.first == source else { continue }
            switch (node.domain, node.opType) {
            case (_, "Cast"), (_, "Identity"):
                source = node.output.first ?? source
                continue
            case ("ai.onnx.ml", "TreeEnsembleClassifier"), ("ai.onnx.ml", "TreeEnsembleRegressor"):
                return .trees(try TreeEnsemble(node: node, featureCount: declared))
            case ("ai.onnx.ml", "LinearClassifier"), ("ai.onnx.ml", "LinearRegressor"):
                return .linear(try LinearModel(node: node, featureCount: declared))
            default:
                throw .invalidArgument(
                    "no exact explainer for this model: it starts with the operator "
                        + "\(node.domain.isEmpty ? "" : node.domain + ".")\(node.opType) (exact methods read "
                        + "TreeEnsembleClassifier/Regressor and LinearClassifier/Regressor fed by the input; other models cannot be explained yet)")
            }
        }
        throw .invalidArgument("no operator reads the model's input '\(input.name)'")
    }
}

/// How a margin becomes what the model outputs.
public enum Link: String, Sendable, Codable {
    /// The margin is the output (regression, a random forest's probabilities).
    case identity
    /// Probability = 1 / (1 + e^-margin): margins are log-odds.
    case logistic
    /// Probabilities = softmax of the margins (one per class).
    case softmax
}

/// A node's attributes by name.
struct Attributes {
    private var byName: [String: Tern_Onnx_AttributeProto] = [:]
    let op: String

    init(_ node: Tern_Onnx_NodeProto) {
        op = node.opType
        for attribute in node.attribute { byName[attribute.name] = attribute }
    }

    func has(_ name: String) -> Bool { byName[name] != nil }

    func ints(_ name: String) -> [Int64] { byName[name]?.ints ?? [] }

    func int(_ name: String) -> Int64? { byName[name].map(\.i) }

    func string(_ name: String) -> String? { byName[name].map { String(decoding: $0.s, as: UTF8.self) } }

    func strings(_ name: String) -> [String] { byName[name]?.strings.map { String(decoding: $0, as: UTF8.self) } ?? [] }

    /// Floats, or the `_as_tensor` variant (double precision) when the model has it.
    func reals(_ name: String) throws(TernError) -> [Double] {
        if let tensor = byName[name + "_as_tensor"]?.t { return try Self.values(tensor, name: name + "_as_tensor") }
        return byName[name]?.floats.map(Double.init) ?? []
    }

    static func values(_ tensor: Tern_Onnx_TensorProto, name: String) throws(TernError) -> [Double] {
        if !tensor.doubleData.isEmpty { return tensor.doubleData }
        if !tensor.floatData.isEmpty { return tensor.floatData.map(Double.init) }
        let raw = tensor.rawData
        switch tensor.dataType {
        case 1:
            return stride(from: 0, to: raw.count - raw.count % 4, by: 4).map { offset in
                Double(Float(bitPattern: raw.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }.littleEndian))
            }
        case 11:
            return stride(from: 0, to: raw.count - raw.count % 8, by: 8).map { offset in
                Double(bitPattern: raw.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }.littleEndian)
            }
        default:
            throw .invalidArgument("attribute \(name): tensor of ONNX type \(tensor.dataType) where numbers were expected")
        }
    }

    func fail(_ why: String) -> TernError { .invalidArgument("\(op): \(why)") }
}
