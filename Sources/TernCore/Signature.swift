/// The declared type of one model input or output. A dimension of `-1` is dynamic (any size).
public struct TensorSpec: Sendable, Equatable {
    public var name: String
    public var datatype: DataType
    public var shape: [Int]

    public init(name: String, datatype: DataType, shape: [Int]) {
        self.name = name
        self.datatype = datatype
        self.shape = shape
    }

    /// Whether a concrete shape fits this spec (same rank, fixed dimensions equal).
    public func accepts(shape concrete: [Int]) -> Bool {
        guard concrete.count == shape.count else { return false }
        for (declared, actual) in zip(shape, concrete) where declared >= 0 && declared != actual {
            return false
        }
        return true
    }
}

/// A model's inputs and outputs: what requests are validated against.
public struct ModelSignature: Sendable, Equatable {
    public var inputs: [TensorSpec]
    public var outputs: [TensorSpec]

    public init(inputs: [TensorSpec], outputs: [TensorSpec]) {
        self.inputs = inputs
        self.outputs = outputs
    }

    public func input(named name: String) -> TensorSpec? { inputs.first { $0.name == name } }
    public func output(named name: String) -> TensorSpec? { outputs.first { $0.name == name } }
}

/// Descriptive metadata read from a model file.
public struct ModelMetadata: Sendable, Equatable {
    public var producerName: String
    public var graphName: String
    public var domain: String
    public var description: String
    public var version: Int64
    public var custom: [String: String]

    public init(
        producerName: String = "", graphName: String = "", domain: String = "", description: String = "",
        version: Int64 = 0, custom: [String: String] = [:]
    ) {
        self.producerName = producerName
        self.graphName = graphName
        self.domain = domain
        self.description = description
        self.version = version
        self.custom = custom
    }
}
