import NIOCore
import TernCore

/// A prediction's inputs and outputs as the prediction log stores them: JSON, one object per row, so that a
/// record reads as the applicant it was about: `[{"age": 41, "housing": "own", ...}]` and
/// `[{"label": 1, "probabilities": [0.2, 0.8]}]`.
///
/// - A `[rows, k]` tensor whose k columns have names (`featureNames`) is spread into them.
/// - A `[rows, 1]` tensor (skl2onnx's one input per column; a regressor's value) is one plain value per row
///   under its name, as the reference profile holds it: `"housing": "own"`, not `["own"]`.
/// - Any other tensor sharing the batch dimension is its row's nested array.
/// - An explanation's per-request tensors (`explain_base_values`, `explain_features`, `explain_outputs`) have
///   no row; they are left out so the rows stay the model's rows (`explain_attributions` is per row and kept).
/// - When another tensor does not share the batch dimension, the tensors are stored whole in one object.
///
/// Named fields in `redact` are stored as `"[redacted]"`.
public enum PredictionRecordEncoder {
    public static func rows(_ tensors: [Tensor], featureNames: [String]? = nil, redact: Set<String> = []) -> String {
        var writer = JSONWriter(capacity: 256)
        guard let rows = Self.rowCount(tensors) else {
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
        let spread = Self.spreadTensor(tensors, featureNames: featureNames)
        writer.byte(UInt8(ascii: "["))
        for row in 0..<rows {
            if row > 0 { writer.byte(UInt8(ascii: ",")) }
            writer.byte(UInt8(ascii: "{"))
            var first = true
            func key(_ name: String) {
                if !first { writer.byte(UInt8(ascii: ",")) }
                first = false
                writer.string(name)
                writer.byte(UInt8(ascii: ":"))
            }
            for (index, tensor) in tensors.enumerated() where !Self.explanationMetadata.contains(tensor.name) {
                if index == spread, let names = featureNames {
                    for (column, name) in names.enumerated() {
                        key(name)
                        if redact.contains(name) {
                            writer.string("[redacted]")
                        } else {
                            writer.element(tensor, at: row * names.count + column)
                        }
                    }
                    continue
                }
                key(tensor.name)
                if redact.contains(tensor.name) {
                    writer.string("[redacted]")
                } else if tensor.shape.count == 2, tensor.shape[1] == 1 {
                    writer.element(tensor, at: row)
                } else {
                    TabularCodec.writeRow(tensor, row: row, into: &writer)
                }
            }
            writer.byte(UInt8(ascii: "}"))
        }
        writer.byte(UInt8(ascii: "]"))
        return String(buffer: writer.buffer)
    }

    /// The rows the tensors share (their first dimension), or nil when one of them (other than an
    /// explanation's per-request tensors) does not share it: then the tensors are stored whole.
    public static func rowCount(_ tensors: [Tensor]) -> Int? {
        guard let rows = tensors.first?.shape.first else { return nil }
        for tensor in tensors where tensor.shape.first != rows && !explanationMetadata.contains(tensor.name) { return nil }
        return rows
    }

    /// Which of `tensors` is spread into the named columns `featureNames`: the one `[rows, k]` tensor whose
    /// width the names match, when the tensors share their rows.
    public static func spreadTensor(_ tensors: [Tensor], featureNames: [String]?) -> Int? {
        guard let names = featureNames, names.count > 1, rowCount(tensors) != nil else { return nil }
        var found: Int?
        for (index, tensor) in tensors.enumerated()
        where !explanationMetadata.contains(tensor.name) && tensor.shape.count == 2 && tensor.shape[1] == names.count {
            if found != nil { return nil }
            found = index
        }
        return found
    }

    /// The tensors of an explanation (`explain: true`) that describe the request, not a row.
    public static let explanationMetadata: Set<String> = ["explain_base_values", "explain_features", "explain_outputs"]
}
