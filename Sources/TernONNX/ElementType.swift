import TernCore

/// ONNX tensor element type codes (`ONNXTensorElementDataType`) and their V2 datatypes.
enum ElementType {
    static func dataType(onnx code: Int32) -> DataType? {
        switch code {
        case 1: .fp32
        case 2: .uint8
        case 3: .int8
        case 4: .uint16
        case 5: .int16
        case 6: .int32
        case 7: .int64
        case 8: .bytes
        case 9: .bool
        case 10: .fp16
        case 11: .fp64
        case 12: .uint32
        case 13: .uint64
        default: nil
        }
    }

    static func onnxCode(_ type: DataType) -> Int32 {
        switch type {
        case .fp32: 1
        case .uint8: 2
        case .int8: 3
        case .uint16: 4
        case .int16: 5
        case .int32: 6
        case .int64: 7
        case .bytes: 8
        case .bool: 9
        case .fp16: 10
        case .fp64: 11
        case .uint32: 12
        case .uint64: 13
        }
    }

    static func name(onnx code: Int32) -> String {
        switch code {
        case 14: "COMPLEX64"
        case 15: "COMPLEX128"
        case 16: "BFLOAT16"
        default: dataType(onnx: code)?.rawValue ?? "element type \(code)"
        }
    }
}

/// ONNX value kinds (`ONNXType`).
enum ValueKind {
    static let tensor: Int32 = 1
    static let sequence: Int32 = 2
    static let map: Int32 = 3
}
