import Foundation
import Logging
import TernBundle
import TernCore
import TernModelFiles
import TernONNX

/// Tern's serving core inside an application, with no server: models loaded from a model folder (laid out as
/// `tern serve --models` reads one) or from bundles (`.tern`), and requests validated and run in process by
/// the same ``InferenceService`` the server uses (validation, dynamic batching, the runner threads), so an
/// app on a device answers as the server would.
///
/// ```swift
/// import TernEmbedded
///
/// let models = try EmbeddedModels(folder: "models")      // models/credit-risk/1/model.onnx, ...
/// defer { models.close() }
/// let features = try Tensor(name: "features", shape: [1, 10], values: row)   // [Float]
/// let outputs = try await models.infer("credit-risk", [features])
/// ```
public final class EmbeddedModels: Sendable {
    /// The core that runs the requests (its catalog holds the loaded versions).
    public let service: InferenceService
    private let pool: RunnerPool

    /// Loads every version a model folder's configuration selects (`config.yaml`, as the server does).
    ///
    /// - Parameters:
    ///   - runtime: ONNX Runtime's library; nil finds it as `tern` does (`$TERN_ONNXRUNTIME_LIB`, then
    ///     `.tern/onnxruntime/lib` under the current folder, then the system loader).
    ///   - threads: runner threads (models run on these, never on the caller's).
    public convenience init(folder: String, runtime: ONNXRuntime? = nil, threads: Int = 1) throws(TernError) {
        try self.init(runtime: runtime, threads: threads) { runtime, pool, service throws(TernError) in
            let loader = ModelLoader(
                repository: ModelRepository(root: folder), service: service, runtime: runtime, pool: pool,
                sessionOptions: SessionOptions(), logger: Logger(label: "tern.embedded"))
            try loader.loadAll()
        }
    }

    /// Loads bundles (`tern pack`'s `.tern` files), each as the model and version its manifest names (a
    /// bundle without a version is version 1). Bundles are checked as `tern push` checks them.
    public convenience init(bundles: [String], runtime: ONNXRuntime? = nil, threads: Int = 1) throws(TernError) {
        try self.init(runtime: runtime, threads: threads) { runtime, pool, service throws(TernError) in
            let scratch = FileManager.default.temporaryDirectory.path
            for path in bundles {
                let bundle = try ModelBundle(archiveFile: path)
                var config = ModelConfig()
                if let names = bundle.manifest.featureNames { config.featureNames = names }
                let model = try BundleValidator.load(bundle, runtime: runtime, pool: pool, scratch: scratch)
                service.catalog.add(
                    ServedModel(
                        name: bundle.manifest.name, version: bundle.manifest.version ?? 1, model: model, config: config,
                        platform: "onnxruntime_onnx"))
            }
        }
    }

    private init(
        runtime: ONNXRuntime?, threads: Int, load: (ONNXRuntime, RunnerPool, InferenceService) throws(TernError) -> Void
    ) throws(TernError) {
        let library: ONNXRuntime
        if let runtime { library = runtime } else { library = try Self.defaultRuntime() }
        let pool = RunnerPool(threads: max(1, threads), name: "tern.embedded")
        let service = InferenceService()
        do {
            try load(library, pool, service)
        } catch {
            pool.shutdown()
            throw error
        }
        service.isReady = true
        self.service = service
        self.pool = pool
    }

    /// ONNX Runtime found as `tern` finds it.
    public static func defaultRuntime() throws(TernError) -> ONNXRuntime {
        try ONNXRuntime.open(
            candidates: ONNXRuntime.candidates(
                explicitPath: nil, environmentPath: ProcessInfo.processInfo.environment["TERN_ONNXRUNTIME_LIB"],
                localInstallDirectories: [FileManager.default.currentDirectoryPath + "/.tern/onnxruntime/lib"]))
    }

    /// Every loaded model with its versions.
    public var models: [String: [Int]] {
        Dictionary(uniqueKeysWithValues: service.catalog.modelNames.map { ($0, service.catalog.versions(of: $0)) })
    }

    /// A version's inputs and outputs (nil version: the one a request without a version gets).
    public func signature(of model: String, version: Int? = nil) throws(TernError) -> ModelSignature {
        try service.resolve(model: model, version: version.map(String.init)).model.signature
    }

    /// Runs one request: `inputs` by name, `outputs` the ones wanted (empty: all), checked against the
    /// version's signature first (a mismatch is an `invalidArgument` naming the input).
    public func infer(_ model: String, version: Int? = nil, _ inputs: [Tensor], outputs: [String] = []) async throws -> [Tensor] {
        let served = try service.resolve(model: model, version: version.map(String.init))
        var request = InferenceRequest(inputs: inputs)
        request.outputs = outputs
        return try await service.infer(served, request: request).outputs
    }

    /// Stops the runner threads; requests after this fail.
    public func close() {
        service.isReady = false
        pool.shutdown()
    }
}
