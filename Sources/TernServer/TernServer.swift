import CoreMetrics
import Foundation
import Logging
import NIOCertificateReloading
import NIOCore
import NIOPosix
import OTel
import ServiceLifecycle
import Synchronization
import TernAuth
import TernBatch
import TernConsole
import TernCore
import TernExplain
import TernGRPC
import TernGraphQL
import TernHTTP
import TernModelFiles
import TernModels
import TernMonitoring
import TernONNX
import TernRegistry
import TernRollouts
import Tracing
import UnixSignals

#if canImport(Glibc)
    import Glibc
#endif

/// Everything `tern serve` needs, parsed at the edge (CLI flags) and passed in.
public struct ServerConfiguration: Sendable {
    public var modelsDirectory: String
    public var host: String = "0.0.0.0"
    /// HTTP port; 0 picks a free one (tests).
    public var httpPort: Int = 8000
    /// The name of the model when `modelsDirectory` holds one `model.onnx` directly.
    public var singleModelName = "model"
    /// gRPC port; 0 picks a free one; nil turns gRPC off.
    public var grpcPort: Int? = 8001
    public var http = HTTPFrontEndConfiguration()
    /// Routes for other platforms' contracts (SageMaker, Vertex AI, Azure ML) and the default model.
    public var platform = PlatformRoutesConfiguration()
    public var sessionOptions = SessionOptions()
    /// Threads that run models; by default one per core.
    public var runnerThreads: Int = ProcessInfo.processInfo.activeProcessorCount
    /// Event loop threads for HTTP; by default one per core.
    public var httpThreads: Int = ProcessInfo.processInfo.activeProcessorCount
    /// Calls one gRPC connection may have open at once (clients queue the rest).
    public var grpcMaxConcurrentStreams: Int = 256
    /// How long a graceful shutdown may take to drain in-flight requests.
    public var drainTimeout: Duration = .seconds(30)
    /// Serve the models of a registry (and its management API) instead of a repository folder.
    public var registry: RegistryServing?
    /// Prometheus metrics at `GET /metrics` (on by default).
    public var metricsEnabled = true
    /// Serve `/metrics` on this port instead of the HTTP port (0 picks a free one); nil: on the HTTP port.
    public var metricsPort: Int?
    /// The share of inference requests the access log writes (0: off, 1: all).
    public var accessLogSampleRate: Double = 0
    /// Where predictions are recorded; nil turns the prediction log off.
    public var predictionLog: PredictionLogConfiguration?
    /// Traces: the tracer spans go to and the service that exports them; nil turns tracing off.
    public var tracing: TracingSetup?
    /// Alert rules (`--alert-rules`); nil: none.
    public var alerts: AlertConfiguration?
    /// Batch jobs inside the server (`--batch-root`); nil: none.
    public var batch: BatchJobsConfiguration?
    /// How often drift gauges are computed for `/metrics` (zero: never), over the newest `driftWindow` predictions.
    public var driftInterval: Duration = .seconds(60)
    public var driftWindow = 1000
    /// How many of each served version's newest predictions are kept in memory for drift (0: none; drift then
    /// reads the prediction log).
    public var driftWindowCapacity = 1_000
    /// API keys: nil serves everyone (an open server; the CLI then binds it to loopback).
    public var auth: AuthConfiguration?
    /// Whether an open server serves management (admin routes and RPCs, `/api/v1`): off when it is reachable
    /// beyond loopback with no credential checked (``AccessControl/openManagementRefusal``).
    public var openManagement = true
    /// What one explanation may cost (`--max-explain-work`, `--explain-timeout`).
    public var explanationLimits = ExplanationLimits()
    /// TLS for HTTP and gRPC (mutual with a client CA); nil: plaintext.
    public var tls: TLSFiles?
    /// Requests a second per API key, and per client address (health probes aside); nil: unlimited.
    public var keyRateLimit: RateLimit?
    public var addressRateLimit: RateLimit?
    /// Requests each API key may have in flight at once; nil: unlimited.
    public var keyConcurrency: Int?
    /// GraphQL at `/graphql` (`--graphql off` turns it off).
    public var graphql = true
    /// A page to write GraphQL queries in, at `GET /graphql` from a browser (`--graphql-playground`).
    public var graphqlPlayground = false
    /// The console at `/ui` (`--ui off` turns it off).
    public var console = true

    public init(modelsDirectory: String) {
        self.modelsDirectory = modelsDirectory
    }
}

/// Where a server finds the API keys it accepts.
public struct AuthConfiguration: Sendable {
    /// The registry holding the keys; nil: the registry the server serves (`registry`).
    public var keys: RegistryLocation?
    /// How often the keys are read again (a revoked key is refused everywhere within it).
    public var pollInterval: Duration = .seconds(1)
    /// `GET /metrics` needs the `metrics` scope (else it is open, as the health routes).
    public var protectsMetrics = false
    /// Bearer tokens (JWTs) from an identity provider, accepted beside the API keys.
    public var tokens: TokenPolicy?

    public init(keys: RegistryLocation? = nil) {
        self.keys = keys
    }
}

/// Where spans go: a tracer and the service that exports its spans (swift-otel's OTLP exporter).
public struct TracingSetup: Sendable {
    public var tracer: any Tracer
    public var service: any Service

    public init(tracer: any Tracer, service: any Service) {
        self.tracer = tracer
        self.service = service
    }

    /// OTLP over HTTP (protobuf) to `endpoint` (a base URL such as http://collector:4318), or to what the
    /// standard `OTEL_EXPORTER_OTLP_ENDPOINT` names; the other `OTEL_*` variables apply as the standard says.
    public static func otlp(endpoint: String?, logger: Logger) throws -> TracingSetup {
        if let endpoint { setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint, 1) }
        var configuration = OTel.Configuration.default
        configuration.serviceName = "tern"
        configuration.diagnosticLogger = .custom(logger)
        configuration.traces.otlpExporter.protocol = .httpProtobuf
        configuration.traces.batchSpanProcessor.scheduleDelay = .seconds(1)
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        return TracingSetup(tracer: backend.factory, service: backend.service)
    }
}

/// A Tern server: models loaded from a repository folder, served over the Open Inference Protocol v2 REST.
///
/// ```swift
/// let server = TernServer(configuration: config, runtime: runtime, logger: logger)
/// try await server.run()   // until SIGINT/SIGTERM, then drains
/// ```
public struct TernServer: Sendable {
    public let configuration: ServerConfiguration
    public let service: InferenceService
    /// Where the metrics live; nil when metrics are off.
    public let metrics: TernMetricsFactory?
    /// The prediction log, when on.
    public let predictionLog: PredictionLog?
    /// The API's connection to the prediction log (reads never wait behind the writer's batches).
    let predictionReader: PredictionReader
    /// Shadow versions' copies and comparisons (with a registry).
    let shadows: ShadowTraffic?
    /// Each version's numbers for the models under rollout (with a registry).
    let rolloutWatch: RolloutWatch?
    let runtime: ONNXRuntime
    let logger: Logger
    /// The API keys, when authentication is configured.
    let keyring: APIKeyring?
    /// The identity provider's tokens, when configured.
    let tokens: BearerTokens?
    /// Each served version's newest predictions in memory, for drift (with a registry, whose bundles hold
    /// the reference data).
    let driftWindows: DriftWindows?
    /// The last hour of requests per version, second by second, for the console.
    let trafficHistory: TrafficHistory?

    public init(configuration: ServerConfiguration, runtime: ONNXRuntime, logger: Logger) {
        var configuration = configuration
        let keyring = configuration.auth.map { APIKeyring(pollInterval: $0.pollInterval, logger: Logger(label: "tern.auth")) }
        self.keyring = keyring
        let tokens = configuration.auth?.tokens.map { BearerTokens(policy: $0, logger: Logger(label: "tern.auth")) }
        self.tokens = tokens
        configuration.http.access = AccessControl(
            verifier: configuration.auth == nil ? nil : Credentials(keys: keyring, tokens: tokens),
            protectsMetrics: configuration.auth?.protectsMetrics ?? false,
            keyLimiter: configuration.keyRateLimit.map(RateLimiter.init), addressLimiter: configuration.addressRateLimit.map(RateLimiter.init),
            keyConcurrency: configuration.keyConcurrency.map { ConcurrencyLimiter(limit: $0) })
        if !configuration.openManagement { configuration.http.access.openManagementRefusal = AccessControl.managementNeedsKeys }
        self.configuration = configuration
        self.runtime = runtime
        self.logger = logger
        let metrics = configuration.metricsEnabled ? TernMetricsFactory() : nil
        self.metrics = metrics
        let factory: any MetricsFactory = metrics ?? NOOPMetricsHandler.instance
        // Request counters for every protocol Tern serves (gRPC's too when it is off: the series read zero).
        let protocols = HTTPAPI.protocols + GRPCFrontEnd.protocols + [.graphql]
        self.service = InferenceService(
            catalog: ModelCatalog(metricsFactory: factory, protocols: protocols), timesRuns: configuration.tracing != nil)
        let predictionLog = configuration.predictionLog.map {
            PredictionLog(configuration: $0, factory: factory, logger: Logger(label: "tern.predictions"))
        }
        self.predictionLog = predictionLog
        // Readers of this server's log (the API, drift, feedback) see every prediction answered before they ask.
        var beforeReading: (@Sendable () async -> Void)?
        if let predictionLog { beforeReading = { await predictionLog.caughtUp() } }
        self.predictionReader = PredictionReader(cipher: configuration.predictionLog?.cipher, beforeReading: beforeReading)
        var observers: [any InferenceObserver] = []
        if configuration.accessLogSampleRate > 0 {
            observers.append(RequestLogger(accessSampleRate: configuration.accessLogSampleRate))
        }
        if let predictionLog { observers.append(predictionLog) }
        // With a registry (drift needs its bundles' reference data), or for latency alert rules.
        let latencyRules = configuration.alerts?.rules.contains { $0.metric == .latencyP99 } ?? false
        driftWindows =
            (configuration.registry != nil || latencyRules) && configuration.driftWindowCapacity > 0
            ? DriftWindows(capacity: configuration.driftWindowCapacity) : nil
        if let driftWindows { observers.append(driftWindows) }
        if let tracing = configuration.tracing { observers.append(SpanObserver(tracer: tracing.tracer)) }
        // Traffic policies come from a registry: so do their shadow versions.
        let catalog = service.catalog
        let shadows =
            configuration.registry == nil
            ? nil
            : ShadowTraffic(catalog: catalog, factory: factory, logger: Logger(label: "tern.shadow"))
        self.shadows = shadows
        if let shadows { observers.append(shadows) }
        trafficHistory = configuration.console ? TrafficHistory() : nil
        if let trafficHistory { observers.append(trafficHistory) }
        let rolloutWatch = configuration.registry == nil ? nil : RolloutWatch()
        self.rolloutWatch = rolloutWatch
        if let rolloutWatch { observers.append(rolloutWatch) }
        service.observe(with: observers)
    }

    /// `GET /metrics`, when metrics are on: the registry's metrics, the gauges read at scrape time (queue depths
    /// of background writers), then the process's.
    func metricsRoute() -> MetricsRoute? {
        let predictionLog = self.predictionLog
        return metrics.map { metrics in
            MetricsRoute { buffer in
                var bytes: [UInt8] = []
                bytes.reserveCapacity(16 << 10)
                metrics.emit(into: &bytes)
                buffer.writeBytes(bytes)
                buffer.writeString(predictionLog?.exposition ?? "")
                buffer.writeString(ProcessMetrics.exposition())
            }
        }
    }

    /// Drift and feedback over the prediction log (drift needs a registry's reference profiles).
    func monitoring(models: RegistryModels?) -> (drift: LiveDrift?, feedback: LiveFeedback?) {
        let location = configuration.predictionLog?.location
        let drift = models.flatMap { models in
            driftWindows.map { LiveDrift(service: service, models: models, log: location, reader: predictionReader, windows: $0) }
        }
        let feedback = location.map { LiveFeedback(log: $0, reader: predictionReader, models: models) }
        return (drift, feedback)
    }

    /// The HTTP API over this server's services. `monitors`: live drift and feedback, made once per server
    /// (``monitoring(models:)``) and shared with the alert evaluator and the drift gauges, so that each reads a
    /// version's reference profile once.
    func httpAPI(
        models: RegistryModels?, monitors: (drift: LiveDrift?, feedback: LiveFeedback?) = (nil, nil),
        alerts: AlertEvaluator? = nil, jobs: BatchJobs? = nil, explanations: Explanations, rollouts: RolloutDriver? = nil
    ) -> HTTPAPI {
        var api = HTTPAPI(service: service, http: configuration.http, platform: configuration.platform, explanations: explanations)
        if configuration.metricsPort == nil { api.metrics = metricsRoute() }
        api.predictionLog = configuration.predictionLog?.location
        api.predictionReader = predictionReader
        (api.drift, api.feedback) = monitors
        api.alerts = alerts
        api.jobs = jobs
        api.models = models
        api.shadows = shadows
        api.rollouts = rollouts
        api.maxBundleBytes = configuration.registry?.maxBundleBytes ?? 0
        api.uploadFolder = configuration.registry?.uploadFolder ?? NSTemporaryDirectory()
        api.keysChanged = { [keyring] in await keyring?.reload() }
        api.otherRoutes = configuration.grpcPort == nil ? [] : GRPCFrontEnd.routes
        if configuration.graphql {
            let owners = GraphQLOwners(
                service: service, models: models, drift: monitors.drift, feedback: monitors.feedback, alerts: alerts, jobs: jobs)
            let graphql = GraphQLRoutes(owners: owners, http: configuration.http, playground: configuration.graphqlPlayground)
            api.moreRoutes.append { graphql.register(on: $0) }
        }
        if let trafficHistory {
            let owners = ConsoleOwners(
                service: service, history: trafficHistory, models: models, drift: monitors.drift, feedback: monitors.feedback,
                alerts: alerts, jobs: jobs, rollouts: rollouts, explanations: explanations,
                keyLastUse: { [keyring] name in keyring?.lastUse(of: name) })
            let console = ConsoleRoutes(owners: owners, access: configuration.http.access, secure: configuration.tls != nil)
            api.moreRoutes.append { console.register(on: $0) }
        }
        return api
    }

    /// Runs until a signal (or, with `signals: []`, until the task is cancelled); `onHTTPReady` and
    /// `onGRPCReady` receive the bound ports.
    public func run(
        signals: [UnixSignal] = [.sigterm, .sigint], onHTTPReady: @escaping @Sendable (Int) async -> Void = { _ in },
        onGRPCReady: @escaping @Sendable (Int) async -> Void = { _ in },
        onMetricsReady: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        try preflight()
        try await predictionLog?.open()
        let pool = RunnerPool(threads: configuration.runnerThreads)
        let listening = ListenerGate(listeners: listenerCount)
        let loader: any Service
        var models: RegistryModels?
        if let serving = configuration.registry {
            let registry = try await Registry.open(database: serving.database, artifacts: serving.artifacts, logger: logger)
            // Uploads a killed server left half-received or half-checked, and archives a killed push left unregistered.
            try? FileManager.default.removeItem(atPath: serving.uploadFolder)
            do {
                let garbage = try await registry.collectGarbage()
                if !garbage.artifacts.isEmpty || garbage.partials > 0 {
                    logger.notice(
                        "removed unreferenced archives",
                        metadata: [
                            "archives": "\(garbage.artifacts.count)", "partials": "\(garbage.partials)", "bytes": "\(garbage.bytes)",
                        ])
                }
            } catch {
                logger.warning("cannot look for unreferenced archives", metadata: ["error": "\(error)"])
            }
            let registryModels = RegistryModels(
                registry: registry, service: service, runtime: runtime, pool: pool,
                sessionOptions: configuration.sessionOptions, cacheFolder: serving.cacheFolder, logger: logger,
                trustedKeys: serving.trustedKeys, gateRoot: serving.gateRoot)
            models = registryModels
            service.repository = registryModels
            loader = RegistrySyncService(
                models: registryModels, service: service, pool: pool, pollInterval: serving.pollInterval, logger: logger,
                listening: listening)
        } else {
            loader = ModelLoader(
                repository: ModelRepository(root: configuration.modelsDirectory, singleModelName: configuration.singleModelName),
                service: service, runtime: runtime,
                pool: pool, sessionOptions: configuration.sessionOptions, logger: logger, listening: listening)
        }
        // Closed once every service has stopped (a service still polling a closed registry would fail).
        var opened: [Registry] = models.map { [$0.registry] } ?? []
        if let keyring, let auth = configuration.auth {
            if let location = auth.keys {
                let keys = try await Registry.open(database: location, artifacts: .database, logger: logger)
                opened.append(keys)
                try await keyring.load(from: keys)
            } else if let registry = models?.registry {
                try await keyring.load(from: registry)
            }
        }
        try await tokens?.load()
        let monitors = monitoring(models: models)
        let (drift, feedback) = monitors
        var alerts: AlertEvaluator?
        if let rules = configuration.alerts {
            alerts = AlertEvaluator(
                configuration: rules, drift: drift, feedback: feedback, windows: driftWindows, service: service,
                registry: models?.registry,
                factory: service.catalog.metricsFactory, logger: Logger(label: "tern.alerts"))
        }
        // One per server: each version's explainer is prepared once, for the explain routes, `explain: true` and jobs.
        let explanations = Explanations(service: service, registry: models?.registry, limits: configuration.explanationLimits)
        service.explainer = explanations  // `explain: true` on infer requests, whatever the protocol
        let jobs = configuration.batch.map {
            BatchJobs(
                configuration: $0, service: self.service, registry: models?.registry, runtime: self.runtime,
                explanations: explanations, logger: Logger(label: "tern.batch"))
        }
        let rollouts = models.flatMap { models in
            rolloutWatch.map { watch in
                RolloutDriver(
                    models: models, watch: watch, feedback: feedback, gate: models.gate,
                    webhooks: configuration.alerts?.webhooks ?? [], factory: self.service.catalog.metricsFactory,
                    logger: Logger(label: "tern.rollout"))
            }
        }
        // The certificate and key, read again on SIGHUP for every new handshake (HTTP and gRPC).
        let reloader = try configuration.tls.map { files throws(TernError) in try FileCertificateReloader(files: files) }
        let connections = ConnectionCount()
        let app = try httpAPI(
            models: models, monitors: monitors, alerts: alerts, jobs: jobs, explanations: explanations, rollouts: rollouts
        ).server(
            host: configuration.host, port: configuration.httpPort, threads: configuration.httpThreads,
            tls: try reloader.map { reloader in
                var tls = try reloader.files.serverConfiguration()
                tls.setCertificateReloader(reloader)
                return tls
            },
            connections: connections,
            onRunning: { port in
                listening.opened()
                await onHTTPReady(port)
            },
            logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        // First in, last out: the prediction log writes what the drained requests queued before it stops.
        if let tracing = configuration.tracing { services.append(.named(tracing.service)) }
        if let predictionLog { services.append(.named(predictionLog)) }
        if let keyring { services.append(.named(keyring)) }
        if let tokens { services.append(.named(tokens)) }
        if let reloader { services.append(.named(CertificateReloadService(reloader: reloader, logger: logger))) }
        services.append(.named(loader))
        if let alerts { services.append(.named(alerts)) }
        if let jobs { services.append(.named(jobs)) }
        if let rollouts { services.append(.named(rollouts)) }
        if metrics != nil, configuration.driftInterval > .zero, let drift {
            services.append(
                .named(
                    DriftMonitor(
                        drift: drift, feedback: feedback, service: service, interval: configuration.driftInterval, window: configuration.driftWindow,
                        factory: service.catalog.metricsFactory, logger: Logger(label: "tern.drift"))))
        }
        if let grpcPort = configuration.grpcPort {
            let grpc = GRPCFrontEnd(
                service: service,
                configuration: GRPCFrontEndConfiguration(
                    host: configuration.host, port: grpcPort, maxMessageBytes: configuration.http.maxRequestBytes,
                    maxConcurrentStreams: configuration.grpcMaxConcurrentStreams,
                    maxIdleTime: configuration.http.connections.idleTimeout * 5, access: configuration.http.access,
                    tls: configuration.tls, certificateReloader: reloader))
            services.append(.named(grpc))
            services.append(
                .named(
                    PortReporter(
                        { await grpc.port },
                        onReady: { port in
                            listening.opened()
                            await onGRPCReady(port)
                        })))
        }
        services.append(.named(app))
        if let metricsPort = configuration.metricsPort, let route = metricsRoute() {
            services.append(
                .named(
                    HTTPAPI.metricsServer(
                        route, access: configuration.http.access, host: configuration.host, port: metricsPort,
                        onRunning: { port in
                            listening.opened()
                            await onMetricsReady(port)
                        }, logger: logger)))
        }
        // Last in, so first told of a shutdown: says it has begun, before the listeners drain.
        services.append(.named(ShutdownNotice(connections: connections, drainTimeout: configuration.drainTimeout, logger: logger)))
        var groupConfiguration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: signals, logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = configuration.drainTimeout
        // Services stop in reverse order: HTTP, then gRPC drain first, then the loader stops the runner threads.
        let closeAll = { [opened, predictionReader] in
            await predictionReader.close()
            for registry in opened { await registry.close() }
        }
        do {
            try await ServiceGroup(configuration: groupConfiguration).run()
        } catch {
            await closeAll()
            throw error
        }
        await closeAll()
    }
}

extension TernServer {
    /// The front-ends that must listen before the server is ready: HTTP, gRPC, a separate metrics port.
    public var listenerCount: Int {
        1 + (configuration.grpcPort == nil ? 0 : 1) + (configuration.metricsEnabled && configuration.metricsPort != nil ? 1 : 0)
    }

    /// What can be checked before anything starts, each failure one line naming what to change: the model
    /// folder (it exists, holds models, and none is a pickle or another format; the files load later) and the
    /// ports (free, and not the same).
    public func preflight() throws(TernError) {
        if configuration.registry == nil {
            let repository = ModelRepository(root: configuration.modelsDirectory, singleModelName: configuration.singleModelName)
            let models = try repository.discover()
            guard !models.isEmpty else {
                throw .invalidArgument(
                    "model repository '\(configuration.modelsDirectory)' holds no models; expected "
                        + "\(configuration.modelsDirectory)/<name>/<version>/model.onnx")
            }
            // A pickle or a checkpoint where a model.onnx should be: said before anything starts (files are only peeked at).
            for model in models {
                for path in model.versions.values.sorted() {
                    if let explanation = ModelFileSniffer.notONNX(path) { throw .invalidArgument(explanation) }
                }
            }
        }
        if let tls = configuration.tls { _ = try tls.serverConfiguration() }
        if let grpc = configuration.grpcPort, grpc != 0, grpc == configuration.httpPort {
            throw .invalidArgument("HTTP and gRPC cannot share port \(grpc); change --http-port or --grpc-port")
        }
        try PortProbe.check(host: configuration.host, port: configuration.httpPort, protocolName: "HTTP", flag: "--http-port")
        if let grpc = configuration.grpcPort {
            try PortProbe.check(host: configuration.host, port: grpc, protocolName: "gRPC", flag: "--grpc-port")
        }
        if configuration.metricsEnabled, let port = configuration.metricsPort, port != 0 {
            if port == configuration.httpPort || port == configuration.grpcPort {
                throw .invalidArgument("the metrics port \(port) is also the HTTP or gRPC port; change --metrics-port")
            }
            try PortProbe.check(host: configuration.host, port: port, protocolName: "metrics", flag: "--metrics-port")
        }
    }
}

/// Whether a TCP port can be listened on, found by binding it for a moment (as the server will, with
/// SO_REUSEADDR), so that a port in use is reported before anything starts.
enum PortProbe {
    static func check(host: String, port: Int, protocolName: String, flag: String) throws(TernError) {
        guard port != 0 else { return }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else {
            throw .invalidArgument("cannot listen on '\(host)': not an address of this machine (--host)")
        }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let reason = errno == EADDRINUSE ? "is in use by another process" : String(cString: strerror(errno))
            throw .invalidArgument("\(protocolName) port \(port) on \(host) \(reason); choose another with \(flag)")
        }
    }
}

/// Waits for a front-end to bind, reports its port, then idles until shutdown.
struct PortReporter: Service {
    let port: @Sendable () async -> Int?
    let onReady: @Sendable (Int) async -> Void

    init(_ port: @escaping @Sendable () async -> Int?, onReady: @escaping @Sendable (Int) async -> Void) {
        self.port = port
        self.onReady = onReady
    }

    func run() async throws {
        if let bound = await port() { await onReady(bound) }
        try? await gracefulShutdown()
    }
}

/// Says once that a shutdown has begun (SIGTERM, Ctrl-C): how many HTTP connections are drained, within what.
struct ShutdownNotice: Service {
    let connections: ConnectionCount
    let drainTimeout: Duration
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        guard !Task.isCancelled else { return }
        logger.notice(
            "stopping: draining \(connections.current) HTTP connection\(connections.current == 1 ? "" : "s") and the calls in flight",
            metadata: ["drain_timeout": "\(drainTimeout)"])
    }
}

extension ServiceGroupConfiguration.ServiceConfiguration {
    /// A service named by its type in ServiceLifecycle's logs. Its default name is the service described
    /// (`"\(service)"`), which walks every field of a struct by reflection: the HTTP application's took a few
    /// milliseconds of every start.
    static func named(_ service: any Service) -> Self {
        .init(service: service, serviceName: _typeName(type(of: service), qualified: false))
    }
}
