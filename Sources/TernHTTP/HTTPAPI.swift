import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import TernBatch
import TernCore
import TernExplain
import TernModels
import TernMonitoring
import TernRegistry
import TernRollouts

/// Every HTTP route Tern serves, each translating between the wire and the service it names; the server's
/// composition says which services exist (nil: that part of the API is absent).
package struct HTTPAPI: Sendable {
    package var service: InferenceService
    package var http: HTTPFrontEndConfiguration
    /// Other platforms' contracts (SageMaker, Vertex AI, Azure ML) and the default model.
    package var platform: PlatformRoutesConfiguration
    package var explanations: Explanations
    /// `GET /metrics` on the HTTP port; nil when metrics are off or have a port of their own.
    package var metrics: MetricsRoute?
    package var predictionLog: PredictionLogLocation?
    package var predictionReader: PredictionReader?
    package var drift: LiveDrift?
    package var feedback: LiveFeedback?
    package var alerts: AlertEvaluator?
    package var jobs: BatchJobs?
    /// A registry's models: the management API, with the shadow comparisons and the rollout driver.
    package var models: RegistryModels?
    package var shadows: ShadowTraffic?
    package var rollouts: RolloutDriver?
    package var maxBundleBytes = 0
    package var uploadFolder = NSTemporaryDirectory()
    /// Runs after an API key is created or revoked (the keyring reads them again).
    package var keysChanged: @Sendable () async -> Void = {}
    /// Routes of the other front-ends (gRPC's), listed beside HTTP's by `GET /api/v1/routes`.
    package var otherRoutes: [RouteEntry] = []
    /// Front-ends in modules of their own (GraphQL, the console), added to the router after the API's routes.
    package var moreRoutes: [@Sendable (ScopedRouter) -> Void] = []
    /// Every HTTP route with its scope, filled as the router is built.
    package let routes = RouteTable()

    package init(service: InferenceService, http: HTTPFrontEndConfiguration, platform: PlatformRoutesConfiguration, explanations: Explanations) {
        self.service = service
        self.http = http
        self.platform = platform
        self.explanations = explanations
    }

    /// The protocols HTTP serves (metric series exist for each).
    package static let protocols: [WireProtocol] = [.v2REST, .kserveV1, .invocations]

    /// The router with every route of this server.
    package func router() -> Router<BasicRequestContext> {
        let base = Router(context: BasicRequestContext.self)
        let router = ScopedRouter(router: base, access: http.access, table: routes)
        V2Routes(service: service, configuration: http).register(on: router)
        let explanations = explanations
        ExplainRoutes(explanations: explanations, http: http).register(on: router)
        PlatformRoutes(service: service, configuration: platform, http: http) { served, request in
            try await explanations.explainRoute(served, request)
        }.register(on: router)
        // After V2Routes: its error middleware applies to the routes added after it.
        metrics?.register(on: router)
        if let predictionLog, let predictionReader {
            PredictionRoutes(location: predictionLog, reader: predictionReader).register(on: router)
        }
        if let drift { DriftRoutes(drift: drift).register(on: router) }
        if let feedback { FeedbackRoutes(feedback: feedback, http: http).register(on: router) }
        if let alerts { AlertRoutes(alerts: alerts).register(on: router) }
        if let jobs { BatchJobRoutes(jobs: jobs).register(on: router) }
        if let models {
            ManagementRoutes(
                models: models, shadows: shadows, maxBundleBytes: maxBundleBytes, uploadFolder: uploadFolder, keysChanged: keysChanged
            ).register(on: router)
            RolloutRoutes(models: models, driver: rollouts).register(on: router)
        }
        for add in moreRoutes { add(router) }
        let table = routes, others = otherRoutes
        router.get("/api/v1/routes", .read) { _, _ in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(table.all + others))))
        }
        // Open, like the health routes: it describes the API, not this server's models or data.
        let openAPI = ByteBuffer(string: OpenAPIDocument.json)
        router.get("/openapi.json", nil) { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: openAPI))
        }
        return base
    }

    /// The HTTP server: HTTP/1.1 (over TLS with `tls`) with the connection guard and the infer fast path in
    /// front of the router; `onRunning` receives the bound port.
    package func server(
        host: String, port: Int, threads: Int, tls: TLSConfiguration?, connections: ConnectionCount,
        onRunning: @escaping @Sendable (Int) async -> Void, logger: Logger
    ) throws -> any Service {
        let http1 = HTTPServerBuilder.http1(
            configuration: .init(
                additionalChannelHandlers: [
                    http.connectionGuard(count: connections),
                    V2Routes.inferFastPath(service: service, configuration: http),
                ]))
        return Application(
            router: router(),
            server: try tls.map { try .tls(http1, tlsConfiguration: $0) } ?? http1,
            configuration: .init(address: .hostname(host, port: port), serverName: "tern"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
            eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))),
            logger: logger)
    }

    /// `GET /metrics` alone, on a port of its own.
    package static func metricsServer(
        _ route: MetricsRoute, access: AccessControl, host: String, port: Int,
        onRunning: @escaping @Sendable (Int) async -> Void, logger: Logger
    ) -> any Service {
        let router = Router(context: BasicRequestContext.self)
        route.register(on: ScopedRouter(router: router, access: access))
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "tern"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }
}
