import TernCore

/// What the fuzz targets share: the signatures decoded requests are checked against (every datatype, a
/// dynamic batch), so validation runs on whatever the decoders accept.
public enum FuzzSupport {
    public static let signature = ModelSignature(
        inputs: [
            TensorSpec(name: "features", datatype: .fp32, shape: [-1, 4]),
            TensorSpec(name: "counts", datatype: .int64, shape: [-1, 2]),
            TensorSpec(name: "flags", datatype: .bool, shape: [-1]),
            TensorSpec(name: "text", datatype: .bytes, shape: [-1, 1]),
        ],
        outputs: [TensorSpec(name: "label", datatype: .int64, shape: [-1])])

    public static let tabular = ModelSignature(
        inputs: [TensorSpec(name: "features", datatype: .fp32, shape: [-1, 4])],
        outputs: [TensorSpec(name: "label", datatype: .int64, shape: [-1])])

    public static let featureNames = ["age", "income", "ratio", "years"]

    /// Checks a decoded request the way the core does before running it; a refusal is an expected answer.
    public static func validate(_ request: InferenceRequest) {
        _ = try? RequestValidator.validate(request, against: signature, maxBatchSize: 64)
    }

    /// The input as raw bytes.
    public static func bytes(_ start: UnsafeRawPointer, _ count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: start, count: count))
    }
}
