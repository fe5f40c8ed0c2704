import Foundation
import TernBundle
import TernCore
import TernModels
import TernMonitoring
import TernRegistry
import TernStatistics

/// What GraphQL's types show: plain values made from the owners' records when a field asks for them.

extension VersionPerformance {
    /// The live and the holdout metrics as name/value pairs (GraphQL has no open-ended objects).
    var liveMetrics: [MetricView] { MetricView.all(live) }
    var validationMetrics: [MetricView] { MetricView.all(validation) }
}

struct JobView: Sendable {
    var id: String
    var model: String
    var version: Int?
    var state: String
    var rows: Int
    var rejected: Int
    var error: String?
    var createdBy: String?
    var startedAt: String?
    var endedAt: String?
}

struct ServerView: Sendable {
    var name: String
    var version: String
    var ready: Bool
}

/// One tensor of a prediction: numbers in `data` (booleans as 1 and 0; NaN and infinities as null), text in
/// `strings` (BYTES).
struct TensorView: Sendable {
    var name: String
    var datatype: String
    var shape: [Int]
    var data: [Double?]?
    var strings: [String]?

    init(_ tensor: Tensor) {
        name = tensor.name
        datatype = tensor.datatype.rawValue
        shape = tensor.shape
        if let text = tensor.strings {
            strings = text
            return
        }
        data = Self.numbers(tensor)
    }

    /// The elements as doubles whose shortest form is the one v2 JSON writes: a 32-bit float goes through its
    /// own shortest decimal, so `0.8170732` stays `0.8170732`, not the double `0.81707322597503662`.
    static func numbers(_ tensor: Tensor) -> [Double?] {
        func finite(_ value: Double) -> Double? { value.isFinite ? value : nil }
        switch tensor.datatype {
        case .fp32: return (tensor.values(as: Float.self) ?? []).map { finite(Double($0.description) ?? .nan) }
        case .fp16: return (tensor.values(as: Float16.self) ?? []).map { finite(Double($0.description) ?? .nan) }
        case .fp64: return (tensor.values(as: Double.self) ?? []).map(finite)
        case .bool: return (tensor.values(as: Bool.self) ?? []).map { $0 ? 1 : 0 }
        case .int8: return (tensor.values(as: Int8.self) ?? []).map { Double($0) }
        case .int16: return (tensor.values(as: Int16.self) ?? []).map { Double($0) }
        case .int32: return (tensor.values(as: Int32.self) ?? []).map { Double($0) }
        case .int64: return (tensor.values(as: Int64.self) ?? []).map { Double($0) }
        case .uint8: return (tensor.values(as: UInt8.self) ?? []).map { Double($0) }
        case .uint16: return (tensor.values(as: UInt16.self) ?? []).map { Double($0) }
        case .uint32: return (tensor.values(as: UInt32.self) ?? []).map { Double($0) }
        case .uint64: return (tensor.values(as: UInt64.self) ?? []).map { Double($0) }
        case .bytes: return []
        }
    }
}

struct PredictionView: Sendable {
    var modelName: String
    var modelVersion: String
    var id: String?
    var outputs: [TensorView]
}

/// A tensor of the predict mutation: numbers in `data`, or text in `strings` for BYTES inputs.
struct TensorInput: Codable, Sendable {
    var name: String
    var datatype: String
    var shape: [Int]
    var data: [Double]?
    var strings: [String]?
}
