/// The element type of a tensor, named as in the Open Inference Protocol v2.
///
/// Every ONNX tensor element type that a V2 datatype maps to is here. `bytes` holds variable-length
/// byte strings (ONNX `string`); all others are fixed-size, stored contiguously in little-endian order.
public enum DataType: String, Sendable, CaseIterable, Hashable, CustomStringConvertible {
    case bool = "BOOL"
    case uint8 = "UINT8"
    case uint16 = "UINT16"
    case uint32 = "UINT32"
    case uint64 = "UINT64"
    case int8 = "INT8"
    case int16 = "INT16"
    case int32 = "INT32"
    case int64 = "INT64"
    case fp16 = "FP16"
    case fp32 = "FP32"
    case fp64 = "FP64"
    case bytes = "BYTES"

    /// Size in bytes of one element, or `nil` for variable-length `bytes`.
    public var byteSize: Int? {
        switch self {
        case .bool, .uint8, .int8: 1
        case .uint16, .int16, .fp16: 2
        case .uint32, .int32, .fp32: 4
        case .uint64, .int64, .fp64: 8
        case .bytes: nil
        }
    }

    public var description: String { rawValue }

    /// Parses a V2 datatype name; `nil` for names the protocol does not define or Tern does not serve.
    public init?(v2Name: some StringProtocol) {
        self.init(rawValue: String(v2Name))
    }
}
