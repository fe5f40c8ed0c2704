import Synchronization

/// The loaded models by name and version, with the aliases that name versions. Lookups are lock-protected
/// reads, cheap on the request path; a registry swaps versions and aliases in one step with ``update(_:)``.
public final class ModelCatalog: Sendable {
    /// Everything the catalog holds, replaced as a whole so a request never sees half a change.
    public struct State: Sendable {
        public var models: [String: [Int: ServedModel]] = [:]
        /// Model -> alias -> version.
        public var aliases: [String: [String: Int]] = [:]
        /// The version a request without one gets; the newest loaded one when absent.
        public var defaults: [String: Int] = [:]

        public init() {}
    }

    private let state = Mutex(State())

    public init() {}

    /// Adds (or replaces) a loaded version.
    public func add(_ served: ServedModel) {
        state.withLock { $0.models[served.name, default: [:]][served.version] = served }
    }

    /// Removes a version; returns it if it was there.
    @discardableResult
    public func remove(name: String, version: Int) -> ServedModel? {
        state.withLock { state in
            let removed = state.models[name]?.removeValue(forKey: version)
            if state.models[name]?.isEmpty == true { state.models[name] = nil }
            return removed
        }
    }

    /// Changes versions, aliases and defaults atomically; returns what `body` returns.
    public func update<T>(_ body: (inout State) -> T) -> T {
        state.withLock { body(&$0) }
    }

    /// A copy of the whole state.
    public var current: State { state.withLock { $0 } }

    /// Names of the models with at least one loaded version, sorted.
    public var modelNames: [String] { state.withLock { $0.models.keys.sorted() } }

    /// Loaded versions of a model, ascending; empty if the model is unknown.
    public func versions(of name: String) -> [Int] {
        state.withLock { $0.models[name].map { $0.keys.sorted() } ?? [] }
    }

    /// The versions a statistics request names: every loaded version (no name), every loaded version of a
    /// model (no version), or the one a version or alias names; sorted by name, then version.
    public func selection(name: String?, version: String?) throws(TernError) -> [ServedModel] {
        guard let name, !name.isEmpty else {
            return state.withLock { state in
                state.models.keys.sorted().flatMap { model in state.models[model]!.keys.sorted().map { state.models[model]![$0]! } }
            }
        }
        if let version, !version.isEmpty { return [try resolve(name: name, version: version)] }
        if name.contains("@") { return [try resolve(name: name, version: nil)] }
        let found: Result<[ServedModel], TernError> = state.withLock { state in
            guard let versions = state.models[name], !versions.isEmpty else { return .failure(Self.unknownModel(name, in: state)) }
            return .success(versions.keys.sorted().map { versions[$0]! })
        }
        return try found.get()
    }

    private static func unknownModel(_ name: String, in state: State) -> TernError {
        let loaded = state.models.filter { !$0.value.isEmpty }.keys.sorted()
        return .notFound("unknown model '\(Echo.clip(name))'; "
            + (loaded.isEmpty ? "no model is loaded" : "loaded models: " + loaded.joined(separator: ", ")))
    }

    /// Finds a model version. `name` may carry a version or alias after `@` (`credit-risk@production`,
    /// `credit-risk@2`); `version` may be a number or an alias. Without either, the model's default
    /// version (its `production` alias in a registry), else the newest loaded one.
    ///
    /// - Throws: ``TernError`` `notFound` naming the model and, for an unknown version or alias, the known ones.
    public func resolve(name: String, version: String?) throws(TernError) -> ServedModel {
        var name = name
        var version = version
        if let at = name.firstIndex(of: "@") {
            let reference = String(name[name.index(after: at)...])
            name = String(name[..<at])
            if let version, !version.isEmpty, version != reference {
                throw .invalidArgument("'\(Echo.clip(name + "@" + reference))' and version '\(Echo.clip(version))' name different versions; give one")
            }
            version = reference
        }
        let found: Result<ServedModel, TernError> = state.withLock { state in
            guard let versions = state.models[name], !versions.isEmpty else { return .failure(Self.unknownModel(name, in: state)) }
            guard let version, !version.isEmpty else {
                if let preferred = state.defaults[name], let served = versions[preferred] { return .success(served) }
                return .success(versions[versions.keys.max()!]!)
            }
            if let number = Int(version) {
                guard let served = versions[number] else {
                    let loaded = versions.keys.sorted().map(String.init).joined(separator: ", ")
                    return .failure(.notFound("model '\(name)' has no loaded version '\(Echo.clip(version))'; loaded versions: \(loaded)"))
                }
                return .success(served)
            }
            let aliases = state.aliases[name] ?? [:]
            guard let number = aliases[version] else {
                let known = aliases.keys.sorted().joined(separator: ", ")
                return .failure(.notFound("model '\(name)' has no alias '\(Echo.clip(version))'" + (known.isEmpty ? "" : "; aliases: \(known)")))
            }
            guard let served = versions[number] else {
                return .failure(.unavailable("model '\(name)' alias '\(version)' names version \(number), which is not loaded"))
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
    private let repositoryControl = Mutex<(any ModelRepositoryControl)?>(nil)

    /// The registry behind the model repository extension; nil for a model folder.
    public var repository: (any ModelRepositoryControl)? {
        get { repositoryControl.withLock { $0 } }
        set { repositoryControl.withLock { $0 = newValue } }
    }

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
        let started = ContinuousClock.now
        let (inputs, outputs) = try RequestValidator.validate(
            request, against: served.model.signature, maxBatchSize: served.config.maxBatchSize,
            allowNonFinite: served.config.allowNonFinite)
        let tensors: [Tensor]
        do {
            tensors = try await served.model.run(inputs: inputs, outputs: outputs, timeout: request.timeout)
        } catch {
            Self.record(served, inputs, started: started, succeeded: false)
            throw error
        }
        Self.record(served, inputs, started: started, succeeded: true)
        return InferenceResponse(
            modelName: served.name, modelVersion: String(served.version), id: request.id, outputs: tensors)
    }

    /// Counts a request that reached the model (a refused one is the client's and is not counted): its
    /// time and rows, and for a model that is not batched, its execution (the batcher counts its own).
    private static func record(_ served: ServedModel, _ inputs: [Tensor], started: ContinuousClock.Instant, succeeded: Bool) {
        let duration = started.duration(to: .now)
        let rows = served.rowsInFirstDimension ? (inputs.first?.shape.first ?? 1) : 1
        served.statistics.recordRequest(succeeded: succeeded, duration: duration, rows: rows)
        if served.countsOwnExecutions { served.statistics.recordExecution(duration: duration, requests: 1) }
    }

    /// As ``infer(_:request:)``, reporting through `completion` (called once, on a runner thread when the
    /// model runs, at once when the request is refused): for front-ends that live on an event loop.
    ///
    /// With `inline`, a batched model's request is queued for that thread to run (``InlineRunner``), and
    /// `completion` may be called there.
    public func infer(
        _ served: ServedModel, request: InferenceRequest, inline: (any InlineRunner)? = nil,
        completion: @escaping @Sendable (Result<InferenceResponse, any Error>) -> Void
    ) {
        let inputs: [Tensor], outputs: [String]
        do {
            (inputs, outputs) = try RequestValidator.validate(
                request, against: served.model.signature, maxBatchSize: served.config.maxBatchSize,
                allowNonFinite: served.config.allowNonFinite)
        } catch {
            completion(.failure(error))
            return
        }
        let (name, version, id) = (served.name, String(served.version), request.id)
        let started = ContinuousClock.now
        let finish: @Sendable (Result<[Tensor], any Error>) -> Void = { result in
            Self.record(served, inputs, started: started, succeeded: (try? result.get()) != nil)
            completion(result.map { InferenceResponse(modelName: name, modelVersion: version, id: id, outputs: $0) })
        }
        if let inline, let batcher = served.inlineBatcher {
            batcher.runDeferred(inputs: inputs, outputs: outputs, timeout: request.timeout, completion: finish)
            inline.needsDrain(batcher)
        } else if let model = served.callbackModel {
            model.run(inputs: inputs, outputs: outputs, timeout: request.timeout, completion: finish)
        } else {
            let model = served.model
            let timeout = request.timeout
            Task {
                do {
                    finish(.success(try await model.run(inputs: inputs, outputs: outputs, timeout: timeout)))
                } catch {
                    finish(.failure(error))
                }
            }
        }
    }

    /// ``resolve(model:version:)`` then ``infer(_:request:)``.
    public func infer(model name: String, version: String?, request: InferenceRequest) async throws -> InferenceResponse {
        try await infer(try resolve(model: name, version: version), request: request)
    }
}

/// One version as the protocol's model repository extension lists it.
public struct RepositoryEntry: Sendable, Equatable {
    public var name: String
    public var version: String
    /// `READY` or `UNAVAILABLE`.
    public var state: String
    /// Why a version is unavailable; empty when ready.
    public var reason: String

    public init(name: String, version: String, state: String, reason: String) {
        self.name = name
        self.version = version
        self.state = state
        self.reason = reason
    }
}

/// What the model repository extension (index, load, unload) acts on: a registry's models. Front-ends
/// translate their wire formats to these calls.
public protocol ModelRepositoryControl: Sendable {
    func index(readyOnly: Bool) async throws -> [RepositoryEntry]
    /// Loads a model's default version, or `version`, and keeps it loaded.
    func load(model: String, version: Int?, actor: String) async throws
    /// Unloads `version`, or every version of the model; running requests finish first.
    func unload(model: String, version: Int?, actor: String) async throws
}

extension InferenceService {
    /// The repository extension of a server without a registry: the loaded models, which cannot be
    /// loaded or unloaded one by one.
    public func repositoryIndex(readyOnly: Bool) async throws -> [RepositoryEntry] {
        if let repository { return try await repository.index(readyOnly: readyOnly) }
        return catalog.modelNames.flatMap { name in
            catalog.versions(of: name).map { RepositoryEntry(name: name, version: String($0), state: "READY", reason: "") }
        }
    }

    public func repositoryLoad(model: String, version: Int?, actor: String) async throws {
        guard let repository else { throw Self.noRepository }
        try await repository.load(model: model, version: version, actor: actor)
    }

    public func repositoryUnload(model: String, version: Int?, actor: String) async throws {
        guard let repository else { throw Self.noRepository }
        try await repository.unload(model: model, version: version, actor: actor)
    }

    static var noRepository: TernError {
        .invalidArgument("this server serves a model folder, loaded whole at start; loading and unloading models "
            + "needs a registry (tern serve --data or --database)")
    }
}
