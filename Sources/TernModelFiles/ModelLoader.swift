import Dispatch
import Logging
import ServiceLifecycle
import Synchronization
import TernCore
import TernONNX

/// Loads a repository's models into the catalog at start, marks the server ready, and on shutdown stops
/// the runner threads once the front-ends have drained.
public struct ModelLoader: Service {
    package let repository: ModelRepository
    package let service: InferenceService
    package let runtime: ONNXRuntime
    package let pool: RunnerPool
    package let sessionOptions: SessionOptions
    package let logger: Logger
    /// Ready is said only once the front-ends listen.
    package let listening: ListenerGate?

    public init(
        repository: ModelRepository, service: InferenceService, runtime: ONNXRuntime, pool: RunnerPool,
        sessionOptions: SessionOptions, logger: Logger
    ) {
        self.init(
            repository: repository, service: service, runtime: runtime, pool: pool, sessionOptions: sessionOptions,
            logger: logger, listening: nil)
    }

    package init(
        repository: ModelRepository, service: InferenceService, runtime: ONNXRuntime, pool: RunnerPool,
        sessionOptions: SessionOptions, logger: Logger, listening: ListenerGate?
    ) {
        self.listening = listening
        self.repository = repository
        self.service = service
        self.runtime = runtime
        self.pool = pool
        self.sessionOptions = sessionOptions
        self.logger = logger
    }

    /// Loads every selected version; throws (stopping the server) if any fails, naming the file (the first
    /// in the folder's order). The versions load at once, one per core (making a version's ONNX Runtime
    /// sessions is most of a start, and each is independent of the others), and join the catalog in the
    /// folder's order.
    public func loadAll() throws(TernError) {
        let versions = try repository.discover().flatMap { model in model.selectedVersions.map { (model, $0) } }
        let loaded = Mutex([Result<(served: ServedModel, seconds: Double), TernError>?](repeating: nil, count: versions.count))
        DispatchQueue.concurrentPerform(iterations: versions.count) { index in
            let (model, version) = versions[index]
            let started = ContinuousClock.now
            let result = Result { () throws(TernError) -> (served: ServedModel, seconds: Double) in
                let served = try ServedModel.loadONNX(
                    name: model.name, version: version, path: model.versions[version]!, config: model.config, runtime: runtime,
                    pool: pool, sessionOptions: sessionOptions)
                return (served, LoadMetrics.seconds(since: started))
            }
            loaded.withLock { $0[index] = result }
        }
        let loads = LoadMetrics(factory: service.catalog.metricsFactory)
        for ((model, version), result) in zip(versions, loaded.withLock { $0 }) {
            switch result {
            case .failure(let error)?:
                loads.failed(model.name, version)
                throw error
            case .success(let (served, seconds))?:
                service.catalog.add(served)
                loads.loaded(model.name, version, seconds: seconds)
                logger.info(
                    "model loaded",
                    metadata: [
                        "model": "\(model.name)", "version": "\(version)", "path": "\(model.versions[version]!)",
                        "batching": "\(served.model is DynamicBatcher ? "dynamic" : "off")",
                    ])
            case nil:
                throw TernError.internalError("model \(model.name) version \(version) was not loaded")
            }
        }
    }

    public func run() async throws {
        try loadAll()
        await listening?.wait()
        guard !Task.isCancelled else {  // a front-end failed to start: never ready
            pool.shutdown()
            return
        }
        service.isReady = true
        logger.info("ready", metadata: ["models": "\(service.catalog.modelNames.joined(separator: ","))"])
        try? await gracefulShutdown()
        service.isReady = false
        pool.shutdown()
    }
}

extension ServedModel {
    /// Loads an ONNX model as `config` says to serve it (sessions per version, dynamic batching): the one way
    /// a model folder and a registry both load a version.
    package static func loadONNX(
        name: String, version: Int, path: String, config: ModelConfig, runtime: ONNXRuntime, pool: RunnerPool,
        sessionOptions: SessionOptions
    ) throws(TernError) -> ServedModel {
        var options = sessionOptions
        options.instances = config.instances
        let onnx = try ONNXModel(path: path, runtime: runtime, pool: pool, options: options)
        let model = try DynamicBatcher.applying(config, to: onnx, maxConcurrentBatches: pool.threadCount, name: name)
        return ServedModel(name: name, version: version, model: model, config: config, platform: "onnxruntime_onnx")
    }
}
