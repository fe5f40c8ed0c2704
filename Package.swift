// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "tern",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tern", targets: ["tern"]),
        .library(name: "TernCore", targets: ["TernCore"]),
        .library(name: "TernONNX", targets: ["TernONNX"]),
        .library(name: "TernHTTP", targets: ["TernHTTP"]),
        .library(name: "TernGRPC", targets: ["TernGRPC"]),
        .library(name: "TernServer", targets: ["TernServer"]),
        .library(name: "TernMonitoring", targets: ["TernMonitoring"]),
        .library(name: "TernStatistics", targets: ["TernStatistics"]),
        // The serving core in an app, no server: models from a folder or bundles, requests run in process.
        .library(name: "TernEmbedded", targets: ["TernEmbedded"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation.git", from: "0.9.20"),
        .package(url: "https://github.com/vapor/sql-kit.git", from: "3.36.0"),
        .package(url: "https://github.com/vapor/sqlite-kit.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/postgres-kit.git", from: "2.17.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
        .package(url: "https://github.com/GraphQLSwift/Graphiti.git", from: "3.1.0"),
        .package(url: "https://github.com/GraphQLSwift/GraphQL.git", from: "4.3.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
    ],
    targets: [
        // Our own declarations of the ONNX Runtime C ABI subset Tern calls. No ONNX Runtime header
        // or library is needed at build time: the library is opened with dlopen at run time.
        .target(name: "CONNXRuntime"),
        // The processor a thread runs on (sched_getcpu), for state kept per core (PerProcessor.swift).
        .target(name: "CProcessor"),
        .target(
            name: "TernCore",
            dependencies: [
                "CProcessor",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        // The wire codecs that are not HTTP: v2 JSON and binary tensors, tabular rows, prediction records, JSON text.
        .target(
            name: "TernCodecs",
            dependencies: ["TernCore", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .target(
            name: "TernONNX",
            dependencies: [
                "TernCore", "CONNXRuntime",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "TernHTTP",
            dependencies: [
                "TernCore", "TernCodecs", "TernModels", "TernMonitoring", "TernRollouts", "TernBatch", "TernExplain", "TernRegistry",
                "TernBundle", "TernONNX", "TernAuth",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "TernGRPC",
            dependencies: [
                "TernCore",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCertificateReloading", package: "swift-nio-extras"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            exclude: ["Generated/README.md"],
            swiftSettings: strict
        ),
        // Batch scoring: files in, predictions out, chunked on all cores, resumable, sharded.
        // and the server's batch jobs (scheduled, cancellable).
        .target(
            name: "TernBatch",
            dependencies: [
                "TernCore", "CGzip", "TernCodecs", "TernONNX", "TernBundle", "TernRegistry", "TernExplain",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // gzip members for batch outputs, and zlib's gz* reader for gzip inputs.
        .target(name: "CGzip", linkerSettings: [.linkedLibrary("z")]),
        // Explanations: the model's structure read from its ONNX file (our own minimal .proto), exact
        // TreeSHAP (interventional, path-dependent) and linear attributions.
        .target(
            name: "TernExplain",
            dependencies: [
                "TernCore", "TernCodecs", "TernONNX", "TernBundle", "TernRegistry",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Generated/README.md"],
            swiftSettings: strict
        ),
        // Drift statistics as scipy computes them and the per-column drift report: pure Swift, no server types.
        .target(name: "TernStatistics", swiftSettings: strict),
        // A zlib check of each deflated zip entry before ZIPFoundation inflates it (DeflateCheck.swift).
        .target(name: "CZipCheck", linkerSettings: [.linkedLibrary("z")]),
        // The bundle format: manifest, archive, reference profile, validation metrics, model card.
        .target(
            name: "TernBundle",
            dependencies: [
                "TernCore", "TernStatistics", "CZipCheck",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ],
            swiftSettings: strict
        ),
        // Versions, aliases and the audit trail, in SQLite or PostgreSQL through SQLKit.
        .target(
            name: "TernRegistry",
            dependencies: [
                "TernCore", "TernBundle", "TernCodecs", "CGzip",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "SQLiteKit", package: "sqlite-kit"),
                .product(name: "PostgresKit", package: "postgres-kit"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Models from files: a repository folder (its config.yaml), bundles checked before use, ONNX versions loaded.
        .target(
            name: "TernModelFiles",
            dependencies: [
                "TernCore", "TernONNX", "TernBundle",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // A registry's versions kept in step with what is served (hot swap, pins, unloads).
        .target(
            name: "TernModels",
            dependencies: [
                "TernCore", "TernONNX", "TernBundle", "TernRegistry", "TernModelFiles",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Watching served models: the prediction log, drift windows and live drift, feedback and live quality,
        // alert rules with their webhooks and retraining hooks.
        .target(
            name: "TernMonitoring",
            dependencies: [
                "TernCore", "TernCodecs", "TernStatistics", "TernBundle", "TernRegistry", "TernModels",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strict
        ),
        // Safe updates: the validation gate, rollouts and their driver, shadow comparison, holdout scoring.
        .target(
            name: "TernRollouts",
            dependencies: [
                "TernCore", "TernCodecs", "TernONNX", "TernBundle", "TernRegistry", "TernModels", "TernModelFiles", "TernMonitoring",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strict
        ),
        // The serving core embedded in an application: a model folder or bundles, requests run in process.
        .target(
            name: "TernEmbedded",
            dependencies: ["TernCore", "TernONNX", "TernBundle", "TernModelFiles", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // Who is calling: API keys from a registry, bearer tokens (JWTs) from an identity provider.
        .target(
            name: "TernAuth",
            dependencies: [
                "TernCore", "TernRegistry",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strict
        ),
        // Composition: configuration, wiring of the services above, lifecycle.
        // GraphQL at /graphql: the same owners, scopes and grants as the REST API, in one typed schema.
        .target(
            name: "TernGraphQL",
            dependencies: [
                "TernHTTP", "TernCore", "TernCodecs", "TernModels", "TernMonitoring", "TernRegistry", "TernBatch", "TernRollouts",
                "TernStatistics",
                .product(name: "Graphiti", package: "Graphiti"),
                .product(name: "GraphQL", package: "GraphQL"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: strict
        ),
        // The console at /ui: server-rendered pages over the same owners the API reads, assets in the binary.
        .target(
            name: "TernConsole",
            dependencies: [
                "TernHTTP", "TernCore", "TernModels", "TernMonitoring", "TernRegistry", "TernBatch", "TernRollouts", "TernBundle",
                "TernStatistics", "TernExplain", "TernCodecs",
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "TernServer",
            dependencies: [
                "TernBatch", "TernCodecs", "TernModels", "TernModelFiles", "TernRollouts", "TernAuth", "TernStatistics",
                "TernCore", "TernONNX", "TernHTTP", "TernGRPC", "TernBundle", "TernRegistry", "TernMonitoring", "TernExplain",
                "TernGraphQL", "TernConsole",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCertificateReloading", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "tern",
            dependencies: [
                "TernServer", "TernONNX", "TernCore", "TernHTTP", "TernBundle", "TernRegistry", "TernMonitoring", "TernExplain",
                "TernBatch", "TernCodecs", "TernModels", "TernModelFiles", "TernRollouts", "TernAuth", "TernStatistics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        // Fixture paths, golden data and comparisons shared by the test targets.
        .target(name: "TernTestSupport", dependencies: ["TernCore", "TernONNX"], path: "Tests/TernTestSupport"),
        .testTarget(name: "TernCoreTests", dependencies: ["TernCore", .product(name: "Yams", package: "Yams")], swiftSettings: strict),
        .testTarget(
            name: "TernONNXTests",
            dependencies: ["TernONNX", "TernCore", "TernTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TernHTTPTests",
            dependencies: [
                "TernHTTP", "TernCodecs", "TernServer", "TernONNX", "TernCore", "TernTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TernGRPCTests",
            dependencies: [
                "TernGRPC", "TernCore", "TernModelFiles", "TernONNX", "TernTestSupport",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCInProcessTransport", package: "grpc-swift-2"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TernServerTests",
            dependencies: [
                "TernServer", "TernCore", "TernONNX", "TernTestSupport",
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TernBatchTests",
            dependencies: ["TernBatch", "TernModelFiles", "TernONNX", "TernCore", "TernTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TernEmbeddedTests",
            dependencies: ["TernEmbedded", "TernBundle", "TernONNX", "TernCore", "TernTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TernModelFilesTests",
            dependencies: ["TernModelFiles", "TernCore", "TernTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TernRolloutsTests",
            dependencies: ["TernRollouts", "TernRegistry", "TernBundle", "TernCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TernMonitoringTests",
            dependencies: ["TernMonitoring", "TernCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TernStatisticsTests",
            dependencies: ["TernStatistics", "TernTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TernExplainTests",
            dependencies: ["TernExplain", "TernCore", "TernONNX", "TernBundle", "TernTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TernBundleTests",
            dependencies: ["TernBundle", "TernCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TernRegistryTests",
            dependencies: [
                "TernRegistry", "TernBundle", "TernCore", .product(name: "PostgresKit", package: "postgres-kit"),
                .product(name: "SQLKit", package: "sql-kit"),
            ],
            swiftSettings: strict
        ),
    ]
)

// Fuzz targets (libFuzzer), declared only when TERN_FUZZ is set: `tools/fuzz.sh TARGET SECONDS` builds them
// with `-sanitize=fuzzer,address` in .build-fuzz. Each is a `LLVMFuzzerTestOneInput`.
if Context.environment["TERN_FUZZ"] != nil {
    package.targets.append(.target(name: "FuzzSupport", dependencies: ["TernCore"], path: "Fuzz/FuzzSupport"))
    let fuzzTargets: [(String, [Target.Dependency])] = [
        ("FuzzV2JSON", ["TernCodecs", .product(name: "NIOCore", package: "swift-nio")]),
        ("FuzzV2Binary", ["TernCodecs", .product(name: "NIOCore", package: "swift-nio")]),
        ("FuzzGRPCRequest", ["TernGRPC"]),
        ("FuzzTabular", ["TernCodecs", "TernBundle"]),
        ("FuzzBundle", ["TernBundle"]),
        ("FuzzParsers", ["TernMonitoring"]),
    ]
    for (name, dependencies) in fuzzTargets {
        package.targets.append(
            .executableTarget(
                name: name, dependencies: ["FuzzSupport", "TernCore"] + dependencies, path: "Fuzz/\(name)"))
    }
}
