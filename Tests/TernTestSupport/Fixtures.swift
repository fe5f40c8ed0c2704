import Foundation
import TernCore
import TernONNX

/// Paths and golden data of the fixture models in Tests/Fixtures (built by tools/make-fixtures.py).
public enum Fixtures {
    public static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    public static let modelsDirectory = repositoryRoot + "/Tests/Fixtures/models"
    public static let examplesDirectory = repositoryRoot + "/examples/models"

    /// Every fixture model's name.
    public static let modelNames = [
        "logreg", "gbc", "gbc_zipmap", "xgboost", "lightgbm", "regressor", "mlp", "pipeline_categorical", "all_types",
    ]

    public static func modelPath(_ name: String) -> String { "\(modelsDirectory)/\(name)/model.onnx" }

    /// The golden cases of a fixture: inputs and onnxruntime's (Python) outputs at batch 1 and 64.
    public static func golden(_ name: String) throws -> [GoldenCase] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(modelsDirectory)/\(name)/golden.json"))
        return try JSONDecoder().decode(GoldenFile.self, from: data).cases
    }

    /// The golden file's bytes, for tests that send them over the wire unchanged.
    public static func goldenData(_ name: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: "\(modelsDirectory)/\(name)/golden.json"))
    }

    /// The ONNX Runtime library installed by scripts/install-onnxruntime.sh (or TERN_ONNXRUNTIME_LIB).
    public static let runtime: ONNXRuntime = {
        let candidates = ONNXRuntime.candidates(
            explicitPath: nil, environmentPath: ProcessInfo.processInfo.environment["TERN_ONNXRUNTIME_LIB"],
            localInstallDirectories: [repositoryRoot + "/.tern/onnxruntime/lib"])
        do {
            return try ONNXRuntime.open(candidates: candidates)
        } catch {
            fatalError("\(error)")
        }
    }()

    public static let pool = RunnerPool(threads: 2, name: "tern.test.runner")
}

public struct GoldenFile: Decodable {
    public var cases: [GoldenCase]
}

public struct GoldenCase: Decodable, Sendable {
    public var name: String
    public var inputs: [GoldenTensor]
    public var outputs: [GoldenTensor]
}

/// A tensor as the golden file stores it: flat data, decoded by datatype (UInt64 exactly).
public struct GoldenTensor: Decodable, Sendable {
    public var name: String
    public var datatype: DataType
    public var shape: [Int]
    public var tensor: Tensor

    enum CodingKeys: String, CodingKey { case name, datatype, shape, data }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        let typeName = try container.decode(String.self, forKey: .datatype)
        guard let datatype = DataType(rawValue: typeName) else {
            throw DecodingError.dataCorruptedError(forKey: .datatype, in: container, debugDescription: typeName)
        }
        self.datatype = datatype
        let name = self.name
        let shape = try container.decode([Int].self, forKey: .shape)
        self.shape = shape
        func make<T: TensorElement>(_ values: [T]) throws -> Tensor {
            try Tensor(name: name, shape: shape, values: values)
        }
        switch datatype {
        case .bool: tensor = try make(container.decode([Bool].self, forKey: .data))
        case .uint8: tensor = try make(container.decode([UInt8].self, forKey: .data))
        case .uint16: tensor = try make(container.decode([UInt16].self, forKey: .data))
        case .uint32: tensor = try make(container.decode([UInt32].self, forKey: .data))
        case .uint64: tensor = try make(container.decode([UInt64].self, forKey: .data))
        case .int8: tensor = try make(container.decode([Int8].self, forKey: .data))
        case .int16: tensor = try make(container.decode([Int16].self, forKey: .data))
        case .int32: tensor = try make(container.decode([Int32].self, forKey: .data))
        case .int64: tensor = try make(container.decode([Int64].self, forKey: .data))
        case .fp16: tensor = try make(container.decode([Float].self, forKey: .data).map { Float16($0) })
        case .fp32: tensor = try make(container.decode([Float].self, forKey: .data))
        case .fp64: tensor = try make(container.decode([Double].self, forKey: .data))
        case .bytes: tensor = try Tensor(name: name, shape: shape, strings: container.decode([String].self, forKey: .data))
        }
    }
}

/// Compares an actual tensor with a golden one: exact for integers, bools and bytes; within `tolerance`
/// (absolute, plus the same relative) for floats. Returns a description of the first difference, or nil.
public func difference(_ actual: Tensor, _ expected: Tensor, tolerance: Double = 1e-5) -> String? {
    guard actual.name == expected.name else { return "name \(actual.name) != \(expected.name)" }
    guard actual.datatype == expected.datatype else {
        return "\(expected.name): datatype \(actual.datatype) != \(expected.datatype)"
    }
    guard actual.shape == expected.shape else { return "\(expected.name): shape \(actual.shape) != \(expected.shape)" }
    func close(_ a: [Double], _ b: [Double]) -> String? {
        for (index, (x, y)) in zip(a, b).enumerated() {
            if x.isNaN && y.isNaN { continue }
            if abs(x - y) > tolerance * (1 + abs(y)) { return "\(expected.name)[\(index)]: \(x) != \(y)" }
        }
        return nil
    }
    switch actual.datatype {
    case .fp32: return close(actual.values(as: Float.self)!.map(Double.init), expected.values(as: Float.self)!.map(Double.init))
    case .fp64: return close(actual.values(as: Double.self)!, expected.values(as: Double.self)!)
    case .fp16:
        return close(actual.values(as: Float16.self)!.map(Double.init), expected.values(as: Float16.self)!.map(Double.init))
    default:
        return actual.contents == expected.contents ? nil : "\(expected.name): contents differ"
    }
}
