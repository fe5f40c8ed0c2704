import Logging
import ServiceLifecycle
import TernCore
import TernONNX

/// Loads a repository's models into the catalog at start, marks the server ready, and on shutdown stops
/// the runner threads once the front-ends have drained.
public struct ModelLoader: Service {
    let repository: ModelRepository
    let service: InferenceService
    let runtime: ONNXRuntime
    let pool: RunnerPool
    let sessionOptions: SessionOptions
    let logger: Logger

    public init(
        repository: ModelRepository, service: InferenceService, runtime: ONNXRuntime, pool: RunnerPool,
        sessionOptions: SessionOptions, logger: Logger
    ) {
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
            var options = sessionOptions
            options.instances = model.config.instances
            for version in model.selectedVersions {
                let path = model.versions[version]!
                let onnx = try ONNXModel(path: path, runtime: runtime, pool: pool, options: options)
                let loaded = try DynamicBatcher.applying(
                    model.config, to: onnx, maxConcurrentBatches: pool.threadCount, name: model.name)
                service.catalog.add(
                    ServedModel(name: model.name, version: version, model: loaded, config: model.config,
                        platform: "onnxruntime_onnx"))
                logger.info(
                    "model loaded",
                    metadata: ["model": "\(model.name)", "version": "\(version)", "path": "\(path)",
                               "batching": "\(loaded is DynamicBatcher ? "dynamic" : "off")"])
            }
        }
    }

    public func run() async throws {
        try loadAll()
        service.isReady = true
        logger.info("ready", metadata: ["models": "\(service.catalog.modelNames.joined(separator: ","))"])
        try? await gracefulShutdown()
        service.isReady = false
        pool.shutdown()
    }
}
