import NIOCore
import TernCore

/// A prediction's inputs and outputs as the prediction log stores them: JSON, one object per row, keyed by
/// feature name (a `[rows, features]` input with feature names) or by tensor name, so that a record reads
/// as the applicant it was about: `[{"age": 41, "income": 52000, ...}]` and `[{"label": 1, "probabilities": [0.2, 0.8]}]`.
/// Tensors that do not share the batch dimension are stored whole in one object. Named fields in `redact`
/// are stored as `"[redacted]"`.
public enum PredictionRecordEncoder {
    public static func rows(_ tensors: [Tensor], featureNames: [String]? = nil, redact: Set<String> = []) -> String {
        var writer = JSONWriter(capacity: 256)
        let rows = tensors.first?.shape.first
        guard let rows, tensors.allSatisfy({ $0.shape.first == rows }) else {
            writer.byte(UInt8(ascii: "{"))
            for (index, tensor) in tensors.enumerated() {
                if index > 0 { writer.byte(UInt8(ascii: ",")) }
                writer.string(tensor.name)
                writer.byte(UInt8(ascii: ":"))
                if redact.contains(tensor.name) {
                    writer.string("[redacted]")
                } else {
                    TabularCodec.writeNested(tensor, offset: 0, shape: tensor.shape[...], into: &writer)
                }
            }
            writer.byte(UInt8(ascii: "}"))
            return String(buffer: writer.buffer)
        }
        // A single [rows, k] input whose k columns have names is spread into them.
        let columns: [String]? =
            if tensors.count == 1, tensors[0].shape.count == 2, let featureNames,
                featureNames.count == tensors[0].shape[1]
            { featureNames } else { nil }
        writer.byte(UInt8(ascii: "["))
        for row in 0..<rows {
            if row > 0 { writer.byte(UInt8(ascii: ",")) }
            writer.byte(UInt8(ascii: "{"))
            if let columns {
                for (column, name) in columns.enumerated() {
                    if column > 0 { writer.byte(UInt8(ascii: ",")) }
                    writer.string(name)
                    writer.byte(UInt8(ascii: ":"))
                    if redact.contains(name) {
                        writer.string("[redacted]")
                    } else {
                        writer.element(tensors[0], at: row * columns.count + column)
                    }
                }
            } else {
                for (index, tensor) in tensors.enumerated() {
                    if index > 0 { writer.byte(UInt8(ascii: ",")) }
                    writer.string(tensor.name)
                    writer.byte(UInt8(ascii: ":"))
                    if redact.contains(tensor.name) {
                        writer.string("[redacted]")
                    } else {
                        TabularCodec.writeRow(tensor, row: row, into: &writer)
                    }
                }
            }
            writer.byte(UInt8(ascii: "}"))
        }
        writer.byte(UInt8(ascii: "]"))
        return String(buffer: writer.buffer)
    }
}
