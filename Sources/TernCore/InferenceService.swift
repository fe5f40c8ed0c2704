import Synchronization

/// The loaded models by name and version. Lookups are lock-protected reads, cheap on the request path.
public final class ModelCatalog: Sendable {
    private let models = Mutex<[String: [Int: ServedModel]]>([:])

    public init() {}

    /// Adds (or replaces) a loaded version.
    public func add(_ served: ServedModel) {
        models.withLock { $0[served.name, default: [:]][served.version] = served }
    }

    /// Removes a version; returns it if it was there.
    @discardableResult
    public func remove(name: String, version: Int) -> ServedModel? {
        models.withLock { models in
            let removed = models[name]?.removeValue(forKey: version)
            if models[name]?.isEmpty == true { models[name] = nil }
            return removed
        }
    }

    /// Names of the models with at least one loaded version, sorted.
    public var modelNames: [String] { models.withLock { $0.keys.sorted() } }

    /// Loaded versions of a model, ascending; empty if the model is unknown.
    public func versions(of name: String) -> [Int] {
        models.withLock { $0[name].map { $0.keys.sorted() } ?? [] }
    }

    /// Finds a model version. Without a version, the newest loaded one.
    ///
    /// - Throws: ``TernError`` `notFound` naming the model and, for an unknown version, the loaded ones.
    public func resolve(name: String, version: String?) throws(TernError) -> ServedModel {
        let found: Result<ServedModel, TernError> = models.withLock { models in
            guard let versions = models[name], !versions.isEmpty else {
                return .failure(.notFound("unknown model '\(name)'"))
            }
            guard let version, !version.isEmpty else {
                return .success(versions[versions.keys.max()!]!)
            }
            guard let number = Int(version), let served = versions[number] else {
                let loaded = versions.keys.sorted().map(String.init).joined(separator: ", ")
                return .failure(.notFound("model '\(name)' has no version '\(version)'; loaded versions: \(loaded)"))
            }
            return .success(served)
        }
        return try found.get()
    }
}

/// The protocol-free entry point of inference: every front-end (REST, gRPC, other wire formats) decodes its
/// request into an ``InferenceRequest`` and calls ``infer(model:version:request:)``.
public final class InferenceService: Sendable {
    public let catalog: ModelCatalog
    private let ready = Mutex(false)

    public init(catalog: ModelCatalog = ModelCatalog()) {
        self.catalog = catalog
    }

    /// Whether the server has finished loading its models and accepts inference.
    public var isReady: Bool {
        get { ready.withLock { $0 } }
        set { ready.withLock { $0 = newValue } }
    }

    /// Finds the model version a request is for: the first step of every inference, so that an unknown model
    /// is reported before its body is read.
    ///
    /// - Throws: ``TernError``: `unavailable` before the server is ready, `notFound` for an unknown model or version.
    public func resolve(model name: String, version: String?) throws(TernError) -> ServedModel {
        guard isReady else { throw TernError.unavailable("the server is not ready: models are still loading") }
        return try catalog.resolve(name: name, version: version)
    }

    /// Validates `request` against the version's signature, runs it and returns the outputs.
    ///
    /// - Throws: ``TernError`` `invalidArgument` for a request that does not fit the signature; what the
    ///   model's runtime throws.
    public func infer(_ served: ServedModel, request: InferenceRequest) async throws -> InferenceResponse {
        let (inputs, outputs) = try RequestValidator.validate(
            request, against: served.model.signature, maxBatchSize: served.config.maxBatchSize)
        let tensors = try await served.model.run(inputs: inputs, outputs: outputs, timeout: request.timeout)
        return InferenceResponse(
            modelName: served.name, modelVersion: String(served.version), id: request.id, outputs: tensors)
    }

    /// ``resolve(model:version:)`` then ``infer(_:request:)``.
    public func infer(model name: String, version: String?, request: InferenceRequest) async throws -> InferenceResponse {
        try await infer(try resolve(model: name, version: version), request: request)
    }
}
