import ArgumentParser
import Foundation
import Logging
import TernAuth
import TernBatch
import TernBundle
import TernCore
import TernExplain
import TernHTTP
import TernMonitoring
import TernRegistry
import TernServer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a model folder or a registry over the Open Inference Protocol v2 (REST and gRPC).",
        discussion: """
            Loads every model under --models at start (models/<name>/<version>/model.onnx), or with --data/--database the registry's models (each alias's version and each model's default: its production alias, else its newest version). Without either, the registry in $TERN_DATA, else in .tern/data (where tern push puts it), when there is one. Then serves:
              GET  /v2/health/live, /v2/health/ready, /v2
              GET  /v2/models/<name>[/versions/<v>][/ready|/config|/stats]
              POST /v2/models/<name>[/versions/<v>]/infer  (JSON, or binary tensors)
              gRPC inference.GRPCInferenceService on --grpc-port
              GET  /metrics                                   (Prometheus; --metrics-port to move it)
              GET  /api/v1/predictions/<request id>           (the prediction log; tern predictions)
              GET  /v1/models/<name>, POST /v1/models/<name>:predict  (KServe v1)
              GET  /ping, POST /invocations                  (MLflow, SageMaker)
            plus the platform's own routes with --platform. With a registry, also its management API (/api/v1/models, /api/v1/bundles, /api/v1/audit) and /v2/repository/index|load|unload; requests may name model@alias or model@version, and alias moves take effect without a restart. SIGINT or SIGTERM stops accepting requests, answers those in flight, then exits (docs/operations.md).
            """)

    @Option(
        name: [.customLong("models"), .customLong("model-repository"), .customLong("model_dir")],
        help: ArgumentHelp(
            "The model repository folder, or a folder holding one model.onnx (--model-repository, as Triton names it, and KServe's --model_dir work too).",
            valueName: "dir"))
    var models: String?

    @Option(
        help: ArgumentHelp(
            "Serve the registry in this data folder (registry.sqlite, artifacts/, cache/) instead of --models.",
            valueName: "dir"))
    var data: String?

    @Option(help: ArgumentHelp("Serve the registry in this database: a postgres:// URL or an SQLite file.", valueName: "url"))
    var database: String?

    @Flag(help: "With --data: start an empty registry there when the folder has none (else a typo in --data is refused).")
    var create = false

    @Flag(help: "With --database: bundle archives live in the database, not in DATA/artifacts.")
    var artifactsInDatabase = false

    @Option(help: "Seconds between checks for registry changes made by other replicas.")
    var pollInterval: Double = 1

    @Option(help: ArgumentHelp("Largest bundle a push may upload (K/M/G suffix).", valueName: "size"))
    var maxBundleSize: String = "2G"

    @Option(
        help: ArgumentHelp(
            "Container contract to follow: standalone, sagemaker (port 8080, /opt/ml/model), vertex (AIP_HTTP_PORT, "
                + "AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE, AIP_STORAGE_URI), azureml (port 5001, /score, AZUREML_MODEL_DIR).",
            valueName: "name"))
    var platform: Platform = .standalone

    @Option(
        help: ArgumentHelp(
            "Address to listen on (default: every address when the registry holds API keys, with --jwt-issuer/--jwt-jwks or with --platform; "
                + "else 127.0.0.1, as a server without authentication must not be reachable from other machines).",
            valueName: "address"))
    var host: String?

    @Flag(
        help:
            "Listen on every address even though no API key exists: anyone who reaches the port may infer (management stays off until a key exists).")
    var insecureOpen = false

    @Option(
        help: ArgumentHelp(
            "When the registry holds no API key: create an admin key at start and write it to this file (mode 0600), "
                + "so the server starts with authentication on.", valueName: "file"))
    var bootstrapKeyFile: String?

    @Option(
        help: ArgumentHelp(
            "A further name a server without keys answers for (its Host header; repeatable). Such a server answers only "
                + "for localhost, its loopback addresses and --host, so that no web page reaches it through DNS rebinding.",
            valueName: "name"))
    var allowedHost: [String] = []

    @Option(
        help: ArgumentHelp(
            "With a registry: the folder a validation gate's labelled data (tern models gate --labelled-data) must be in; "
                + "without it, gates score the candidate bundle's holdout only.", valueName: "dir"))
    var gateRoot: String?

    @Option(help: "The slowest a request body may arrive, in bytes a second (averaged, after 5 s); 0: no minimum.")
    var minBodyRate: Int = 240

    @Option(
        help: ArgumentHelp(
            "Model rows one explanation may cost (KernelSHAP: rows x coalitions x background rows; TreeSHAP: rows x background rows).",
            valueName: "rows"))
    var maxExplainWork: Int = 10_000_000

    @Option(help: "Seconds one explanation may run before it is stopped (a 503).")
    var explainTimeout: Double = 30

    @Flag(help: "GET /metrics needs a key with the metrics scope (else it is open, as the health routes are).")
    var metricsAuth = false

    @Option(
        help: ArgumentHelp(
            "Requests a second each API key may send (bursts of a second's worth); past it 429 with Retry-After, gRPC RESOURCE_EXHAUSTED.",
            valueName: "rate"))
    var keyRateLimit: Double?

    @Option(
        help: ArgumentHelp(
            "Accept bearer tokens (JWTs) from this OpenID Connect issuer: its 'iss', and where its keys are found "
                + "(ISSUER/.well-known/openid-configuration) unless --jwt-jwks names them. Needs --jwt-audience.",
            valueName: "url"))
    var jwtIssuer: String?

    @Option(help: ArgumentHelp("The issuer's token keys: a JWKS file or an http(s) URL (read again every --jwt-refresh).", valueName: "file-or-url"))
    var jwtJwks: String?

    @Option(help: ArgumentHelp("The audience ('aud') tokens must be for, such as tern or this server's URL.", valueName: "audience"))
    var jwtAudience: String?

    @Option(
        help: ArgumentHelp(
            "The token claim holding Tern scopes (a space-separated string or an array; 'infer' or 'tern:infer').",
            valueName: "claim"))
    var jwtScopesClaim = "scope"

    @Option(help: ArgumentHelp("The token claim limiting the models it may use (absent: every model).", valueName: "claim"))
    var jwtModelsClaim = "tern_models"

    @Option(help: ArgumentHelp("Seconds the server's clock may differ from the issuer's for 'exp' and 'nbf'.", valueName: "seconds"))
    var jwtClockSkew = 60

    @Option(help: ArgumentHelp("Seconds between reads of the issuer's keys.", valueName: "seconds"))
    var jwtRefresh = 600

    @Option(
        help: ArgumentHelp(
            "With a registry: push and load only bundles signed by one of these Ed25519 public keys (a PEM file or a folder of *.pub).",
            valueName: "path"))
    var trustedKeys: String?

    @Option(help: ArgumentHelp("Serve HTTP and gRPC over TLS (1.2 or later) with this certificate chain (PEM).", valueName: "file"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("The private key (PEM) of --tls-cert.", valueName: "file"))
    var tlsKey: String?

    @Option(help: ArgumentHelp("Require client certificates signed by this CA bundle (PEM): mutual TLS.", valueName: "file"))
    var tlsClientCa: String?

    @Option(
        help: ArgumentHelp(
            "A web origin whose pages may call this server (CORS), such as https://app.example.com; '*' for any. "
                + "Repeatable. Pages of other origins may only read (GET): their other requests get a 403.",
            valueName: "origin"))
    var corsOrigin: [String] = []

    @Option(
        help: ArgumentHelp(
            "Requests each API key may have in flight at once; past it 429 (gRPC RESOURCE_EXHAUSTED).",
            valueName: "requests"))
    var keyConcurrency: Int?

    @Option(
        help: ArgumentHelp(
            "Requests a second each client address may send (health probes aside); past it 429 and the connection closes.",
            valueName: "rate"))
    var ipRateLimit: Double?

    @Option(help: "HTTP port (default: $PORT when set, as Cloud Run, Knative and KServe set it; else 8000, or the platform's).")
    var httpPort: Int?

    @Option(help: "gRPC port (Open Inference Protocol v2 over gRPC; default 8001, off with --platform).")
    var grpcPort: Int?

    @Flag(name: .customLong("no-grpc"), help: "Serve HTTP only.")
    var noGRPC = false

    @Option(help: "The console at /ui (docs/console.md): on or off.")
    var ui: OnOff = .on

    @Option(help: "GraphQL at /graphql (docs/graphql.md): on or off.")
    var graphql: OnOff = .on

    @Flag(help: "GET /graphql from a browser answers a page to write and run queries in.")
    var graphqlPlayground = false

    @Option(help: "The model that /invocations and the platform predict routes use (default: the only one loaded).")
    var defaultModel: String?

    @Option(help: ArgumentHelp("An extra prediction route (POST), such as /score. Repeatable.", valueName: "path"))
    var predictRoute: [String] = []

    @Option(help: ArgumentHelp("An extra health route (GET). Repeatable.", valueName: "path"))
    var healthRoute: [String] = []

    @Option(help: "The name of the model when --models holds one model.onnx directly.")
    var modelName: String = "model"

    @Option(help: ArgumentHelp("Largest request body accepted, in bytes or with a K/M/G suffix (MiB etc.).", valueName: "size"))
    var maxRequestSize: String = "64M"

    @Option(help: "Threads that run models (default: cores / intra-op threads).")
    var runnerThreads: Int?

    @Option(help: "Event loop threads for HTTP (default: one per core).")
    var httpThreads: Int?

    @Option(
        help: ArgumentHelp(
            "Microseconds an HTTP event loop may spend per read burst running light models itself rather than on "
                + "a runner thread (the estimate comes from each model's measured cost per row); 0: always the runners.",
            valueName: "us"))
    var inlineRunBudget: Int = 200

    @Option(help: "Seconds a shutdown may spend draining in-flight requests.")
    var drainTimeout: Int = 30

    @Option(help: "Seconds from a request's first byte to the end of its headers before the connection closes.")
    var headerTimeout: Double = 10

    @Option(help: "Seconds of silence while a request body arrives before the connection closes.")
    var bodyTimeout: Double = 30

    @Option(help: "Seconds an idle keep-alive HTTP connection stays open (gRPC: five times this).")
    var idleTimeout: Double = 60

    @Option(help: "HTTP connections open at once; past it a connection's request gets a 503.")
    var maxConnections: Int = 4096

    @Option(help: "Calls one gRPC connection may have in flight (advertised; clients queue the rest).")
    var grpcMaxStreams: Int = 256

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "Log format: text (for people) or json (one object per line, for log pipelines).")
    var logFormat: String = "text"

    @Option(
        help: ArgumentHelp(
            "Write one access-log line per inference request for this share of requests (0: off, 1: every one, 0.01: one in a hundred).",
            valueName: "rate"))
    var accessLog: Double = 0

    @Flag(name: .customLong("no-metrics"), help: "Do not collect or serve Prometheus metrics (GET /metrics).")
    var noMetrics = false

    @Option(help: "Serve GET /metrics on this port instead of the HTTP port.")
    var metricsPort: Int?

    @Option(
        help: ArgumentHelp(
            "Seconds between drift gauges in /metrics (each served model's newest predictions against its bundle's reference); 0: off.",
            valueName: "seconds"))
    var driftInterval: Double = 60

    @Option(help: ArgumentHelp("How many of a version's newest predictions the drift gauges compare.", valueName: "predictions"))
    var driftWindow: Int = 1000

    @Option(
        help: ArgumentHelp(
            "With a registry: how many of each served version's newest predictions are kept in memory for drift (0: none; "
                + "drift then reads the prediction log).", valueName: "predictions"))
    var driftMemory: Int = 1_000

    @Option(
        help: ArgumentHelp(
            "Alert rules (YAML: interval, webhooks, rules on drift, feedback metrics, error rate, traffic; docs/drift.md).",
            valueName: "file"))
    var alertRules: String?

    @Option(
        help: ArgumentHelp(
            "Run batch jobs inside the server (POST /api/v1/jobs, schedules): they read and write files under this folder only (docs/batch.md).",
            valueName: "dir"))
    var batchRoot: String?

    @Option(help: ArgumentHelp("Threads batch jobs share, at a lowered priority (online requests come first).", valueName: "n"))
    var batchThreads = 1

    @Option(
        help: ArgumentHelp(
            "Recurring batch jobs (YAML: schedules: [{name, cron, model, input, output, ...}]); needs --batch-root.",
            valueName: "file"))
    var batchSchedules: String?

    @Option(
        help: ArgumentHelp(
            "Export traces (OTLP over HTTP) to this collector, such as http://localhost:4318; OTEL_EXPORTER_OTLP_ENDPOINT "
                + "does the same. Off without either.", valueName: "url"))
    var otlpEndpoint: String?

    @Option(
        help: ArgumentHelp(
            "Where to record predictions: an SQLite file, a postgres:// URL, jsonl:DIR (rotated JSON Lines files), or off "
                + "(default: the registry's PostgreSQL database, else predictions.sqlite in the data folder). Read it with tern predictions.",
            valueName: "url"))
    var predictionLog: String?

    @Option(
        help: ArgumentHelp(
            "Delete prediction-log records older than this (such as 30d, 12h), or 'forever' to keep them all; default: 30d.", valueName: "age"))
    var predictionLogRetention: String?

    @Option(help: ArgumentHelp("Keep at most this many prediction-log records (the oldest go first).", valueName: "rows"))
    var predictionLogMaxRows: Int?

    @Option(
        help: ArgumentHelp(
            "Predicted rows that may wait for the log's writer (a 32-row request counts 32); past it predictions are dropped and counted.",
            valueName: "rows"))
    var predictionLogQueue: Int = 20_000

    @Option(
        help: ArgumentHelp(
            "Encrypt each prediction's inputs and outputs at rest (AES-256-GCM) with the first key of this file "
                + "(lines '<id> <base64 of 32 bytes>'; every key decrypts; default: $TERN_PREDICTION_LOG_KEY).", valueName: "file"))
    var predictionLogKey: String?

    @OptionGroup var runtimeOptions: RuntimeOptions

    func validate() throws {
        if let httpPort, !(0...65535).contains(httpPort) { throw ValidationError("--http-port must be 0...65535") }
        if inlineRunBudget < 0 { throw ValidationError("--inline-run-budget must be 0 or more microseconds") }
        if let grpcPort, !(0...65535).contains(grpcPort) { throw ValidationError("--grpc-port must be 0...65535") }
        for route in predictRoute + healthRoute where !route.hasPrefix("/") {
            throw ValidationError("routes must start with '/': \(route)")
        }
        _ = try parseSize(maxRequestSize)
        _ = try parseSize(maxBundleSize)
        if models != nil, data != nil || database != nil {
            throw ValidationError("give --models (a folder of models) or --data/--database (a registry), not both")
        }
        guard pollInterval > 0, pollInterval <= 3600 else { throw ValidationError("--poll-interval must be between 0 and 3600 seconds") }
        guard (0...1 << 30).contains(minBodyRate) else { throw ValidationError("--min-body-rate must be 0 or more bytes a second") }
        guard (1...1_000_000_000_000).contains(maxExplainWork) else { throw ValidationError("--max-explain-work must be 1 or more rows") }
        guard explainTimeout > 0, explainTimeout <= 3600 else { throw ValidationError("--explain-timeout must be between 0 and 3600 seconds") }
        for (flag, seconds) in [("--header-timeout", headerTimeout), ("--body-timeout", bodyTimeout), ("--idle-timeout", idleTimeout)]
        where !(seconds > 0 && seconds <= 86_400) {
            throw ValidationError("\(flag) must be between 0 and 86400 seconds")
        }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
        guard (1...65_536).contains(grpcMaxStreams) else { throw ValidationError("--grpc-max-streams must be 1...65536") }
        guard (0...3600).contains(drainTimeout) else { throw ValidationError("--drain-timeout must be 0...3600 seconds") }
        if let predictionLogRetention, predictionLogRetention != "forever" { _ = try parseAge(predictionLogRetention) }
        if let predictionLogMaxRows, predictionLogMaxRows < 1 { throw ValidationError("--prediction-log-max-rows must be at least 1") }
        guard (1...10_000_000).contains(predictionLogQueue) else { throw ValidationError("--prediction-log-queue must be 1...10000000") }
        if trustedKeys != nil, models != nil { throw ValidationError("--trusted-keys applies to a registry (--data/--database), not to --models") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("give --tls-cert and --tls-key together") }
        if tlsClientCa != nil, tlsCert == nil { throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key") }
        if jwtIssuer != nil || jwtJwks != nil {
            guard let jwtAudience, !jwtAudience.isEmpty else {
                throw ValidationError(
                    "--jwt-issuer/--jwt-jwks need --jwt-audience: without it a token the issuer made for any other service would be accepted")
            }
            if let jwtIssuer, URL(string: jwtIssuer)?.scheme.map({ $0 == "http" || $0 == "https" }) != true {
                throw ValidationError("--jwt-issuer must be an http:// or https:// URL, such as https://login.example.com/realms/ml")
            }
        } else if jwtAudience != nil {
            throw ValidationError("--jwt-audience needs --jwt-issuer or --jwt-jwks")
        }
        guard (0...3600).contains(jwtClockSkew) else { throw ValidationError("--jwt-clock-skew must be 0...3600 seconds") }
        guard (10...86_400).contains(jwtRefresh) else { throw ValidationError("--jwt-refresh must be 10...86400 seconds") }
        if let keyConcurrency, !(1...100_000).contains(keyConcurrency) { throw ValidationError("--key-concurrency must be 1...100000") }
        for (flag, rate) in [("--key-rate-limit", keyRateLimit), ("--ip-rate-limit", ipRateLimit)] {
            if let rate, !(rate > 0 && rate <= 10_000_000) { throw ValidationError("\(flag) must be a positive number of requests a second") }
        }
        guard driftInterval >= 0, driftInterval <= 86_400 else { throw ValidationError("--drift-interval must be 0...86400 seconds") }
        guard (0...1_000_000).contains(driftMemory) else { throw ValidationError("--drift-memory must be 0...1000000 predictions") }
        guard (1...256).contains(batchThreads) else { throw ValidationError("--batch-threads must be 1...256") }
        guard (1...10_000).contains(driftWindow) else { throw ValidationError("--drift-window must be 1...10000 predictions") }
        guard LogFormat(rawValue: logFormat) != nil else { throw ValidationError("--log-format must be text or json") }
        guard (0...1).contains(accessLog) else { throw ValidationError("--access-log must be a share between 0 and 1") }
        if let otlpEndpoint, URL(string: otlpEndpoint)?.scheme.map({ $0 == "http" || $0 == "https" }) != true {
            throw ValidationError("--otlp-endpoint must be an http:// or https:// URL, such as http://localhost:4318")
        }
        if let metricsPort, !(0...65535).contains(metricsPort) { throw ValidationError("--metrics-port must be 0...65535") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of: trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        (LogFormat(rawValue: logFormat) ?? .text).bootstrap(level: level)
        let logger = Logger(label: "tern")
        let preset: Platform.Preset
        do {
            preset = try platform.preset(ProcessInfo.processInfo.environment)
        } catch {
            fail(error)
        }
        var data = self.data
        if models == nil, preset.models == nil, data == nil, database == nil {
            // Nothing named: the registry the other commands default to ($TERN_DATA, else .tern/data), if there is one.
            let folder = RegistryOptions.dataFolder(nil)
            if FileManager.default.fileExists(atPath: folder + "/registry.sqlite") { data = folder }
        }
        let useRegistry = data != nil || database != nil
        guard let modelsDirectory = models ?? preset.models ?? (useRegistry ? "" : nil) else {
            fail(
                TernError.invalidArgument(
                    "give --models (the folder that holds your models) or --data/--database (a registry)"
                        + (platform.modelsVariable.map { ", or set \($0) as \(platform.rawValue) does" } ?? "")))
        }
        let runtime = runtimeOptions.openRuntime()
        var configuration = ServerConfiguration(modelsDirectory: modelsDirectory)
        if useRegistry {
            var options = RegistryOptions()
            options.data = data
            options.database = database
            var serving = try options.serving(artifactsInDatabase: artifactsInDatabase)
            serving.pollInterval = try OutsideNumber.duration(seconds: pollInterval, "--poll-interval")
            serving.maxBundleBytes = try parseSize(maxBundleSize)
            serving.gateRoot = gateRoot
            if let trustedKeys {
                do {
                    serving.trustedKeys = try TrustedKeys(path: trustedKeys)
                } catch {
                    fail(error)
                }
            }
            configuration.registry = serving
            // A --data folder without a registry is most often a typo: refused, unless asked to start one.
            if let data, database == nil, !create, !FileManager.default.fileExists(atPath: data + "/registry.sqlite") {
                let exists = FileManager.default.fileExists(atPath: data)
                fail(
                    TernError.invalidArgument(
                        "--data \(data) holds no registry (\(exists ? "no registry.sqlite in it" : "no such folder")): "
                            + "tern push BUNDLE --data \(data) makes one, or pass --create to serve an empty registry there"))
            }
        }
        // Authentication: the registry's API keys (the served registry's, else the default data folder's).
        var keysLocation: RegistryLocation?
        if useRegistry {
            keysLocation = configuration.registry?.database
        } else {
            let file = RegistryOptions.dataFolder(nil) + "/registry.sqlite"
            keysLocation = FileManager.default.fileExists(atPath: file) ? .sqlite(path: file) : nil
        }
        if bootstrapKeyFile != nil, keysLocation == nil {
            // A model folder: the key lives in the default data folder's registry.
            let folder = RegistryOptions.dataFolder(nil)
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            keysLocation = .sqlite(path: folder + "/registry.sqlite")
        }
        var keyCount = 0
        if let keysLocation {
            do {
                let registry = try await Registry.open(database: keysLocation, artifacts: .database, logger: logger)
                keyCount = try await registry.keys().count
                if keyCount == 0, let bootstrapKeyFile {
                    try await Self.bootstrapKey(registry, file: bootstrapKeyFile, logger: logger)
                    keyCount = 1
                } else if let bootstrapKeyFile, FileManager.default.fileExists(atPath: bootstrapKeyFile) {
                    logger.notice("authentication on: the first admin key is in the bootstrap key file", metadata: ["file": "\(bootstrapKeyFile)"])
                }
                await registry.close()
            } catch {
                fail(error)
            }
            var auth = AuthConfiguration(keys: useRegistry ? nil : keysLocation)
            auth.pollInterval = try OutsideNumber.duration(seconds: pollInterval, "--poll-interval")
            auth.protectsMetrics = metricsAuth
            configuration.auth = auth
        }
        if let jwtAudience {
            var tokens = TokenPolicy(issuer: jwtIssuer, jwks: jwtJwks, audience: jwtAudience)
            tokens.scopesClaim = jwtScopesClaim
            tokens.modelsClaim = jwtModelsClaim
            tokens.clockSkew = .seconds(jwtClockSkew)
            tokens.refreshInterval = .seconds(jwtRefresh)
            var auth = configuration.auth ?? AuthConfiguration()
            auth.protectsMetrics = metricsAuth
            auth.tokens = tokens
            configuration.auth = auth
        }
        // Mutual TLS authenticates every client by its certificate: such a server is not open.
        let open = keyCount == 0 && configuration.auth?.tokens == nil && tlsClientCa == nil
        let fronted = platform != .standalone
        if open, !insecureOpen, !fronted, let host, !Self.isLoopback(host) {
            fail(
                TernError.invalidArgument(
                    "refusing to listen on \(host) without authentication: create a key "
                        + "(tern keys create NAME --scopes infer,read) or pass --insecure-open"))
        }
        configuration.host = host ?? (open && !insecureOpen && !fronted ? "127.0.0.1" : "0.0.0.0")
        if open {
            if fronted || !Self.isLoopback(configuration.host) {
                // A platform's container, or reachable from other machines, with no credential checked:
                // inference only, never management.
                configuration.openManagement = false
            }
            if Self.isLoopback(configuration.host) {
                // Only its own names: a page whose name a DNS rebinding points at 127.0.0.1 gets a 421.
                configuration.http.allowedHosts = Set(
                    ["localhost", "127.0.0.1", "::1", "[::1]", configuration.host.lowercased()]
                        + allowedHost.map { $0.lowercased() })
            }
        }
        let tokenSource = configuration.auth?.tokens?.keySource
        // Said once the checks before binding passed (a failing start prints one line only).
        let sayAccess = { [host = configuration.host] in
            if open {
                if fronted {
                    logger.notice("no API keys: requests are not authenticated (the platform's endpoint is expected to)")
                } else if insecureOpen {
                    logger.warning(
                        "INSECURE: no API keys and --insecure-open; anyone who reaches this server may infer, change and delete models",
                        metadata: ["host": "\(host)"])
                } else {
                    logger.warning(
                        "no API keys: listening on loopback only; create one with tern keys create, or pass --insecure-open",
                        metadata: ["host": "\(host)"])
                }
            } else {
                logger.info(
                    "authentication on",
                    metadata: [
                        "keys": "\(keyCount)", "registry": "\(keysLocation.map { "\($0)" } ?? "")",
                        "tokens": "\(tokenSource ?? "off")",
                    ])
            }
        }
        let host = configuration.host
        configuration.httpPort = try httpPort ?? Self.portFromEnvironment(platform: platform) ?? preset.httpPort
        configuration.grpcPort = noGRPC ? nil : grpcPort ?? (preset.grpc ? 8001 : nil)
        configuration.singleModelName = modelName
        configuration.platform = PlatformRoutesConfiguration(
            defaultModel: defaultModel, healthRoutes: preset.healthRoutes + healthRoute,
            predictRoutes: preset.predictRoutes + predictRoute)
        configuration.http.maxRequestBytes = try parseSize(maxRequestSize)
        configuration.http.inlineRunBudget = .microseconds(inlineRunBudget)
        configuration.sessionOptions = try runtimeOptions.sessionOptions()
        // Runner threads x intra-op threads should not exceed the cores: by default, divide them.
        let cores = ProcessInfo.processInfo.activeProcessorCount
        configuration.runnerThreads = max(1, runnerThreads ?? cores / configuration.sessionOptions.intraOpThreads)
        if configuration.runnerThreads * configuration.sessionOptions.intraOpThreads > cores {
            logger.warning(
                "runner threads x intra-op threads exceeds the cores; runs will compete for them",
                metadata: [
                    "runner-threads": "\(configuration.runnerThreads)",
                    "intra-op-threads": "\(configuration.sessionOptions.intraOpThreads)", "cores": "\(cores)",
                ])
        }
        if let httpThreads { configuration.httpThreads = max(1, httpThreads) }
        configuration.drainTimeout = .seconds(drainTimeout)
        configuration.http.connections = ConnectionLimits(
            headerTimeout: try OutsideNumber.duration(seconds: headerTimeout, "--header-timeout"),
            bodyTimeout: try OutsideNumber.duration(seconds: bodyTimeout, "--body-timeout"),
            idleTimeout: try OutsideNumber.duration(seconds: idleTimeout, "--idle-timeout"), maxConnections: maxConnections,
            minBodyRate: minBodyRate)
        configuration.grpcMaxConcurrentStreams = grpcMaxStreams
        configuration.http.allowedOrigins = corsOrigin
        if let tlsCert, let tlsKey { configuration.tls = TLSFiles(certificate: tlsCert, key: tlsKey, clientCA: tlsClientCa) }
        configuration.keyRateLimit = keyRateLimit.map { RateLimit(perSecond: $0) }
        configuration.keyConcurrency = keyConcurrency
        configuration.addressRateLimit = ipRateLimit.map { RateLimit(perSecond: $0) }
        configuration.metricsEnabled = !noMetrics
        configuration.console = ui == .on
        configuration.graphql = graphql == .on
        configuration.graphqlPlayground = graphqlPlayground
        configuration.metricsPort = metricsPort
        configuration.accessLogSampleRate = accessLog
        configuration.driftInterval = try OutsideNumber.duration(seconds: driftInterval, "--drift-interval")
        configuration.explanationLimits = ExplanationLimits(
            maxWork: maxExplainWork, timeout: try OutsideNumber.duration(seconds: explainTimeout, "--explain-timeout"))
        configuration.driftWindow = driftWindow
        configuration.driftWindowCapacity = driftMemory
        if let alertRules {
            do {
                configuration.alerts = try AlertConfiguration.load(path: alertRules)
            } catch {
                fail(error)
            }
        }
        if let batchRoot {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: batchRoot, isDirectory: &isFolder), isFolder.boolValue else {
                fail(TernError.invalidArgument("--batch-root '\(batchRoot)' is not a folder"))
            }
            var batch = BatchJobsConfiguration(root: batchRoot)
            batch.threads = batchThreads
            if let batchSchedules {
                do {
                    batch.schedules = try BatchJobsConfiguration.schedules(path: batchSchedules)
                } catch {
                    fail(error)
                }
            }
            configuration.batch = batch
        } else if batchSchedules != nil {
            fail(TernError.invalidArgument("--batch-schedules needs --batch-root (the folder jobs read and write)"))
        }
        let environment = ProcessInfo.processInfo.environment
        if otlpEndpoint != nil || environment["OTEL_EXPORTER_OTLP_ENDPOINT"] != nil
            || environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] != nil
        {
            do {
                configuration.tracing = try TracingSetup.otlp(endpoint: otlpEndpoint, logger: Logger(label: "tern.otel"))
            } catch {
                fail(TernError.invalidArgument("cannot export traces: \(error) (check --otlp-endpoint and the OTEL_* variables)"))
            }
        }
        var logOptions = RegistryOptions()
        logOptions.data = data
        logOptions.database = database
        if let location = try logOptions.predictionLogLocation(predictionLog) {
            var log = PredictionLogConfiguration(location: location)
            if let predictionLogRetention {
                log.maxAge = predictionLogRetention == "forever" ? nil : try parseAge(predictionLogRetention)
            }
            log.maxRows = predictionLogMaxRows
            if case .files = location, predictionLogMaxRows != nil {
                fail(TernError.invalidArgument("--prediction-log-max-rows applies to a database; for jsonl: files use --prediction-log-retention"))
            }
            log.queueCapacity = predictionLogQueue
            do {
                log.cipher = try RegistryOptions.predictionLogCipher(predictionLogKey)
            } catch {
                fail(error)
            }
            configuration.predictionLog = log
        }
        let server = TernServer(configuration: configuration, runtime: runtime, logger: logger)
        do {
            try server.preflight()  // a typo'd folder or a busy port: one line, before anything is logged or bound
        } catch {
            fail(error)
        }
        sayAccess()
        logger.info("onnxruntime", metadata: ["library": "\(runtime.libraryPath)", "version": "\(runtime.version)"])
        // "serving" once every listener is bound, naming each.
        let listeners = Listeners(expected: server.listenerCount)
        let report: @Sendable (String, Int) async -> Void = { name, port in
            if let bound = await listeners.bound(name, port) {
                var metadata: Logger.Metadata = ["platform": "\(platform.rawValue)"]
                for (name, port) in bound { metadata[name] = "\(host):\(port)" }
                logger.info("serving", metadata: metadata)
            }
        }
        // As an AWS Lambda container image: invocations from the Runtime API, answered through the HTTP port.
        let lambdaAPI = ProcessInfo.processInfo.environment["AWS_LAMBDA_RUNTIME_API"].flatMap { $0.isEmpty ? nil : $0 }
        let lambdaLogger = logger, service = server.service
        do {
            try await server.run(
                onHTTPReady: { port in
                    await report("http", port)
                    if let lambdaAPI {
                        lambdaLogger.info("taking invocations from the Lambda Runtime API", metadata: ["api": "\(lambdaAPI)"])
                        Task.detached { await LambdaRuntime(api: lambdaAPI, localPort: port, logger: lambdaLogger) { service.isReady }.run() }
                    }
                }, onGRPCReady: { await report("grpc", $0) },
                onMetricsReady: { await report("metrics", $0) })
        } catch {
            fail(error)
        }
    }
}

/// Parses "1048576", "64M", "64MiB", "2G" into bytes.
extension Serve {
    /// Creates the first admin key and writes it to `file` (0600), for a server that must start with
    /// authentication on and nobody at a terminal (a container's first start).
    static func bootstrapKey(_ registry: Registry, file: String, logger: Logger) async throws {
        // A key already in the file (a Kubernetes Secret mounted there, or the key of an earlier start whose
        // registry was wiped) becomes the first key; else a new one is made and written there.
        if let text = try? String(contentsOfFile: file, encoding: .utf8), !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            do {
                _ = try await registry.createKey(
                    name: "bootstrap", scopes: [.admin, .infer, .read, .metrics], models: nil, expiresAt: nil,
                    actor: "tern serve --bootstrap-key-file", given: text)
            } catch  where error.code == .conflict {
                // Another replica on the same registry stored it first.
            } catch {
                throw TernError.invalidArgument("--bootstrap-key-file \(file): \(error.message)")
            }
            logger.notice(
                "the first API key 'bootstrap' (admin, infer, read, metrics) is the one in \(file); clients send it as 'Authorization: Bearer KEY'",
                metadata: ["file": "\(file)"])
            return
        }
        let (_, key) = try await registry.createKey(
            name: "bootstrap", scopes: [.admin, .infer, .read, .metrics], models: nil, expiresAt: nil, actor: "tern serve --bootstrap-key-file")
        let url = URL(fileURLWithPath: file)
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: file, contents: Data((key + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw TernError.invalidArgument("cannot write the bootstrap key to \(file)")
        }
        let how = "read it with 'cat \(file)' (in a container: docker exec CONTAINER cat \(file), or docker cp)"
        logger.notice(
            "created the first API key 'bootstrap' (admin, infer, read, metrics): \(how); clients send it as 'Authorization: Bearer KEY'",
            metadata: ["file": "\(file)"])
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

func parseSize(_ text: String) throws -> Int {
    var digits = text.trimmingCharacters(in: .whitespaces).uppercased()
    for suffix in ["IB", "B"] where digits.hasSuffix(suffix) { digits.removeLast(suffix.count) }
    var multiplier = 1
    if let last = digits.last, let power = ["K": 1, "M": 2, "G": 3][String(last)] {
        multiplier = 1 << (10 * power)
        digits.removeLast()
    }
    guard let value = Int(digits), value > 0 else {
        throw ValidationError("'\(text)' is not a size; use bytes or a K/M/G suffix, such as 64M")
    }
    let (bytes, overflow) = value.multipliedReportingOverflow(by: multiplier)
    guard !overflow, bytes <= 1 << 40 else { throw ValidationError("'\(text)' is larger than 1T") }
    return bytes
}

/// Parses "90s", "15m", "12h", "30d" into a duration.
func parseAge(_ text: String) throws -> Duration {
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    guard let unit = trimmed.last, let seconds = ["s": 1, "m": 60, "h": 3600, "d": 86400][String(unit)],
        let count = Int(trimmed.dropLast()), count > 0, count < 100_000_000 / seconds
    else {
        throw ValidationError("'\(text)' is not an age; use a number with s, m, h or d, such as 30d")
    }
    return .seconds(count * seconds)
}

/// The listeners bound so far; all of them once the last one reports.
actor Listeners {
    let expected: Int
    private var ports: [(String, Int)] = []

    init(expected: Int) { self.expected = expected }

    func bound(_ name: String, _ port: Int) -> [(String, Int)]? {
        ports.append((name, port))
        return ports.count == expected ? ports : nil
    }
}

extension Serve {
    /// `$PORT`, which Cloud Run, Knative (and KServe's serverless mode) and Heroku-style platforms set for
    /// the port to listen on; the `--platform` presets read their own variables instead.
    static func portFromEnvironment(platform: Platform, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Int? {
        guard platform == .standalone, let text = environment["PORT"], !text.isEmpty else { return nil }
        guard let port = Int(text), (1...65535).contains(port) else {
            throw ValidationError("$PORT is '\(text)', not a port number (1...65535)")
        }
        return port
    }
}

/// A part of the server that is on unless turned off (`--ui off`).
enum OnOff: String, ExpressibleByArgument, CaseIterable {
    case on, off
}
