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

    public init(modelName: String, modelVersion: String, id: String?, outputs: [Tensor]) {
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.id = id
        self.outputs = outputs
    }
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
}
