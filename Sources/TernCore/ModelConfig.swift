/// Which versions of a model are served.
public enum VersionPolicy: Sendable, Equatable {
    /// The newest `n` versions.
    case latest(Int)
    /// Every version found.
    case all
    /// Exactly these versions.
    case specific([Int])

    /// The versions to serve out of those available.
    public func select(from available: [Int]) -> [Int] {
        let sorted = available.sorted()
        switch self {
        case .latest(let count): return Array(sorted.suffix(max(1, count)))
        case .all: return sorted
        case .specific(let wanted): return sorted.filter(wanted.contains)
        }
    }
}

/// Per-model serving configuration (a model folder's `config.yaml`).
public struct ModelConfig: Sendable, Equatable {
    public var versionPolicy: VersionPolicy = .latest(1)
    /// The largest first dimension an input may have; 0 means no limit.
    public var maxBatchSize: Int = 0
    /// Runtime sessions per version.
    public var instances: Int = 1

    public init(versionPolicy: VersionPolicy = .latest(1), maxBatchSize: Int = 0, instances: Int = 1) {
        self.versionPolicy = versionPolicy
        self.maxBatchSize = maxBatchSize
        self.instances = instances
    }
}

/// One loaded version of a model, ready to serve.
public struct ServedModel: Sendable {
    public var name: String
    public var version: Int
    public var model: any InferenceModel
    public var config: ModelConfig
    /// The runtime, named as Triton does ("onnxruntime_onnx").
    public var platform: String

    public init(name: String, version: Int, model: any InferenceModel, config: ModelConfig, platform: String) {
        self.name = name
        self.version = version
        self.model = model
        self.config = config
        self.platform = platform
    }
}
