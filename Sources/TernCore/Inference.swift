/// A parameter value as the Open Inference Protocol carries it.
public enum ParameterValue: Sendable, Equatable {
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
}

/// A protocol-free inference request: what every front-end decodes its wire format into.
public struct InferenceRequest: Sendable {
    /// The client's request id, echoed in the response.
    public var id: String?
    public var inputs: [Tensor]
    /// Names of the outputs wanted; empty means all of the model's outputs.
    public var outputs: [String]
    public var parameters: [String: ParameterValue]

    public init(
        id: String? = nil, inputs: [Tensor], outputs: [String] = [], parameters: [String: ParameterValue] = [:]
    ) {
        self.id = id
        self.inputs = inputs
        self.outputs = outputs
        self.parameters = parameters
    }
}

/// A protocol-free inference response.
public struct InferenceResponse: Sendable {
    public var modelName: String
    public var modelVersion: String
    public var id: String?
    public var outputs: [Tensor]
    /// Response parameters: `fallback: true` and `fallback_reason` when a fallback answered.
    public var parameters: [String: ParameterValue]

    public init(modelName: String, modelVersion: String, id: String?, outputs: [Tensor], parameters: [String: ParameterValue] = [:]) {
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.id = id
        self.outputs = outputs
        self.parameters = parameters
    }
}

/// Explains an answered request (`explain: true`): the tensors it adds to the response's outputs.
public protocol ResponseExplainer: Sendable {
    func explain(_ served: ServedModel, request: InferenceRequest, inputs: [Tensor]) async throws -> [Tensor]
}

/// Runs blocking work on threads a backend owns (never an event loop or Swift's cooperative pool).
public protocol BlockingExecutor: Sendable {
    /// Queues `job`; returns false if the executor has shut down and will not run it.
    func execute(_ job: @escaping @Sendable () -> Void) -> Bool
}

/// Something that runs a loaded model: the boundary between the core and a runtime such as ONNX Runtime.
///
/// Implementations must be safe to call concurrently and must not block the caller's executor: blocking
/// work runs on threads the backend owns.
public protocol InferenceModel: Sendable {
    var signature: ModelSignature { get }
    var metadata: ModelMetadata { get }
    /// Runs the model on validated inputs and returns the named outputs, in the order asked.
    func run(inputs: [Tensor], outputs: [String]) async throws -> [Tensor]
    /// As ``run(inputs:outputs:)``, failing if the request waits in a queue longer than `timeout`.
    func run(inputs: [Tensor], outputs: [String], timeout: Duration?) async throws -> [Tensor]
}

extension InferenceModel {
    /// Models without a queue have nothing to time out.
    public func run(inputs: [Tensor], outputs: [String], timeout: Duration?) async throws -> [Tensor] {
        try await run(inputs: inputs, outputs: outputs)
    }
}

extension InferenceRequest {
    /// The `timeout` parameter (microseconds), as Triton's clients send it.
    public var timeout: Duration? {
        guard case .int(let microseconds) = parameters["timeout"], microseconds > 0 else { return nil }
        return .microseconds(microseconds)
    }
}

/// A model that can also report its outputs through a callback, so that a front-end on an event loop can
/// run it without a hop through Swift's cooperative pool.
public protocol CallbackInferenceModel: InferenceModel {
    /// Runs the model on validated inputs; `completion` is called exactly once, on a thread of the model's.
    func run(
        inputs: [Tensor], outputs: [String], timeout: Duration?,
        completion: @escaping @Sendable (Result<[Tensor], any Error>) -> Void)
}

/// A model that can also run synchronously, on the executor it names: what the dynamic batcher drives.
public protocol BlockingInferenceModel: CallbackInferenceModel {
    /// Where runs of this model belong.
    var executor: any BlockingExecutor { get }
    /// Runs on the calling thread (one of `executor`'s). Inputs are validated and in signature order.
    func runBlocking(inputs: [Tensor], outputs: [String]) throws(TernError) -> [Tensor]
}

extension ModelSignature {
    /// Whether every input and output has a leading dynamic (batch) dimension, so requests can be merged
    /// along it and outputs split back.
    public var hasBatchDimension: Bool {
        (inputs + outputs).allSatisfy { $0.shape.first == -1 }
    }
}

extension BlockingInferenceModel {
    /// Runs on the model's executor (no queue: `timeout` does not apply).
    public func run(
        inputs: [Tensor], outputs: [String], timeout: Duration?,
        completion: @escaping @Sendable (Result<[Tensor], any Error>) -> Void
    ) {
        let queued = executor.execute {
            completion(Result { () throws(TernError) in try runBlocking(inputs: inputs, outputs: outputs) }.mapError { $0 as any Error })
        }
        if !queued { completion(.failure(TernError.unavailable("the model runner is shutting down"))) }
    }
}

/// A thread that runs short batches itself instead of handing them to a runner thread: an event loop, between
/// its read bursts. Two thread hand-offs per batch cost more than a light model's run (docs/performance.md).
public protocol InlineRunner: AnyObject {
    /// `batcher` holds requests queued with ``DynamicBatcher/runDeferred(inputs:outputs:timeout:completion:)``:
    /// call its ``DynamicBatcher/drainInline(budget:)`` soon, on this thread.
    func needsDrain(_ batcher: DynamicBatcher)
}
