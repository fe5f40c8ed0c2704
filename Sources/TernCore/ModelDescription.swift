/// What a served version says about itself in Triton's model configuration: the one description that REST's
/// `GET .../config` and gRPC's `ModelConfig` both encode, so the two cannot drift apart.
public struct ModelDescription: Sendable, Equatable {
    public struct Tensor: Sendable, Equatable {
        public var name: String
        /// Triton's configuration name: `TYPE_FP32`, ..., `TYPE_STRING` for bytes.
        public var dataType: String
        /// -1 for a dynamic dimension.
        public var dims: [Int]
    }

    /// Present when requests to the version are merged into batches.
    public struct DynamicBatching: Sendable, Equatable {
        public var preferredBatchSizes: [Int]
        public var maxQueueDelayMicroseconds: UInt64
    }

    public var name: String
    public var platform: String
    public var backend = "onnxruntime"
    public var maxBatchSize: Int
    public var inputs: [Tensor]
    public var outputs: [Tensor]
    public var dynamicBatching: DynamicBatching?

    public init(_ served: ServedModel) {
        name = served.name
        platform = served.platform
        maxBatchSize = served.config.maxBatchSize
        func tensors(_ specs: [TensorSpec]) -> [Tensor] {
            specs.map { Tensor(name: $0.name, dataType: Self.dataType($0.datatype), dims: $0.shape) }
        }
        inputs = tensors(served.model.signature.inputs)
        outputs = tensors(served.model.signature.outputs)
        if let batcher = served.model as? DynamicBatcher {
            dynamicBatching = DynamicBatching(
                preferredBatchSizes: batcher.configuration.preferredBatchSizes,
                maxQueueDelayMicroseconds: UInt64(max(0, batcher.configuration.maxQueueDelay / .microseconds(1))))
        }
    }

    public static func dataType(_ type: DataType) -> String {
        "TYPE_" + (type == .bytes ? "STRING" : type.rawValue)
    }
}
