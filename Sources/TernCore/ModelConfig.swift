import Foundation

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

/// Dynamic batching settings of a model version (Triton's model): requests queued while the runners are
/// busy are merged along the batch dimension, run once, and split back.
public struct DynamicBatching: Sendable, Equatable {
    /// Most rows in one merged batch.
    public var maxBatchSize: Int
    /// Batch sizes to aim for: a batch runs as soon as the queue holds the smallest of them.
    public var preferredBatchSizes: [Int]
    /// How long the oldest request may wait for a preferred batch size to fill (0: run what is queued).
    public var maxQueueDelay: Duration
    /// Most requests waiting; more are refused with `resourceExhausted` (HTTP 503 + Retry-After).
    public var maxQueueSize: Int
    /// How long a request may wait in the queue before it fails (`nil`: no limit).
    public var defaultTimeout: Duration?

    public init(
        maxBatchSize: Int = 256, preferredBatchSizes: [Int] = [], maxQueueDelay: Duration = .zero,
        maxQueueSize: Int = 4096, defaultTimeout: Duration? = nil
    ) {
        self.maxBatchSize = maxBatchSize
        self.preferredBatchSizes = preferredBatchSizes.sorted()
        self.maxQueueDelay = maxQueueDelay
        self.maxQueueSize = maxQueueSize
        self.defaultTimeout = defaultTimeout
    }
}

/// Whether a model version batches requests.
public enum BatchingSetting: Sendable, Equatable {
    /// On (with no queue delay) for models whose inputs and outputs all have a dynamic batch dimension.
    case automatic
    case disabled
    case enabled(DynamicBatching)
}

/// Per-model serving configuration (a model folder's `config.yaml`).
public struct ModelConfig: Sendable, Equatable {
    public var versionPolicy: VersionPolicy = .latest(1)
    /// The largest first dimension an input may have; 0 means no limit.
    public var maxBatchSize: Int = 0
    /// Runtime sessions per version.
    public var instances: Int = 1
    public var batching: BatchingSetting = .automatic
    /// Names of the columns of a model whose one input is [rows, features], in order; when nil, the model's
    /// `feature_names` metadata (comma-separated) is used.
    public var featureNames: [String]?
    /// Whether float inputs may hold NaN or infinities (a model trained to read NaN as "missing", as tree
    /// ensembles are); by default such a request is refused, naming the input and the element.
    public var allowNonFinite = false
    /// What the prediction log keeps of this model's predictions.
    public var predictionLog = PredictionLogSettings()

    public init(
        versionPolicy: VersionPolicy = .latest(1), maxBatchSize: Int = 0, instances: Int = 1,
        batching: BatchingSetting = .automatic
    ) {
        self.versionPolicy = versionPolicy
        self.maxBatchSize = maxBatchSize
        self.instances = instances
        self.batching = batching
    }
}

/// What the prediction log keeps of a model's predictions (`prediction_log` in config.yaml).
public struct PredictionLogSettings: Sendable, Equatable {
    /// The share of predictions recorded: 1 (all, the default) ... 0 (none).
    public var sampleRate: Double = 1
    /// Inputs or feature columns stored as `"[redacted]"`.
    public var redact: Set<String> = []

    public init(sampleRate: Double = 1, redact: Set<String> = []) {
        self.sampleRate = sampleRate
        self.redact = redact
    }
}

/// One loaded version of a model, ready to serve.
///
/// A class: it travels with every request through the core, its closures and its observers, and one
/// reference is cheaper to pass around than a dozen.
public final class ServedModel: Sendable {
    public let name: String
    public let version: Int
    public let model: any InferenceModel
    /// `model` when it can answer through a callback, found once at load rather than cast per request.
    public let callbackModel: (any CallbackInferenceModel)?
    /// `model` when it is a dynamic batcher whose batches an event loop may run (``DynamicBatcher/runsInline``).
    public let inlineBatcher: DynamicBatcher?
    public let config: ModelConfig
    /// The runtime, named as Triton does ("onnxruntime_onnx").
    public let platform: String
    /// What this version has served (the statistics extension); a batched model's batcher keeps its queue
    /// and execution times, the inference service the rest.
    public let statistics: ModelStatistics
    /// Stops calling this version while it keeps failing, when its model has a fallback.
    public let breaker = CircuitBreaker()
    /// Whether a request's first dimension counts its inferences (rows), decided once at load.
    let rowsInFirstDimension: Bool
    /// Whether the service counts executions itself (a batcher counts its own), decided once at load.
    let countsOwnExecutions: Bool

    /// Column names for row formats: the config's, else the model's `feature_names` metadata (read once, at load).
    public let featureNames: [String]?

    public init(name: String, version: Int, model: any InferenceModel, config: ModelConfig, platform: String) {
        self.name = name
        self.version = version
        self.model = model
        self.callbackModel = model as? any CallbackInferenceModel
        self.inlineBatcher = (model as? DynamicBatcher).flatMap { $0.runsInline ? $0 : nil }
        self.config = config
        self.platform = platform
        self.statistics = (model as? DynamicBatcher)?.timings ?? ModelStatistics()
        self.rowsInFirstDimension = model.signature.hasBatchDimension
        self.countsOwnExecutions = !(model is DynamicBatcher)
        if let names = config.featureNames {
            self.featureNames = names
        } else if let text = model.metadata.custom["feature_names"], !text.isEmpty {
            self.featureNames = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        } else {
            self.featureNames = nil
        }
    }
}
