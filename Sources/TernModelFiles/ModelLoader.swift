import Logging
import ServiceLifecycle
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

    /// Loads every selected version; throws (stopping the server) if any fails, naming the file.
    public func loadAll() throws(TernError) {
        for model in try repository.discover() {
            for version in model.selectedVersions {
                let path = model.versions[version]!
                let started = ContinuousClock.now
                let loads = LoadMetrics(factory: service.catalog.metricsFactory)
                let served: ServedModel
                do {
                    served = try ServedModel.loadONNX(
                        name: model.name, version: version, path: path, config: model.config, runtime: runtime, pool: pool,
                        sessionOptions: sessionOptions)
                } catch {
                    loads.failed(model.name, version)
                    throw error
                }
                service.catalog.add(served)
                loads.loaded(model.name, version, seconds: LoadMetrics.seconds(since: started))
                logger.info(
                    "model loaded",
                    metadata: [
                        "model": "\(model.name)", "version": "\(version)", "path": "\(path)",
                        "batching": "\(served.model is DynamicBatcher ? "dynamic" : "off")",
                    ])
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
