import ArgumentParser
import Foundation
import Logging
import TernCore
import TernServer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a model repository folder over the Open Inference Protocol v2 (REST and gRPC).",
        discussion: """
            Loads every model under --models at start (models/<name>/<version>/model.onnx), then serves:
              GET  /v2/health/live, /v2/health/ready, /v2
              GET  /v2/models/<name>[/versions/<v>][/ready|/config]
              POST /v2/models/<name>[/versions/<v>]/infer   (JSON, or Triton's binary tensor data)
            and inference.GRPCInferenceService on --grpc-port (tritonclient.grpc, kserve's gRPC client).
            SIGINT or SIGTERM stops accepting requests, finishes those in flight, then exits.
            """)

    @Option(help: ArgumentHelp("The model repository folder.", valueName: "dir"))
    var models: String

    @Option(help: "Address to listen on.")
    var host: String = "0.0.0.0"

    @Option(help: "HTTP port.")
    var httpPort: Int = 8000

    @Option(help: "gRPC port (Open Inference Protocol v2 over gRPC); -1 turns gRPC off.")
    var grpcPort: Int = 8001

    @Option(help: ArgumentHelp("Largest request body accepted, in bytes or with a K/M/G suffix (MiB etc.).", valueName: "size"))
    var maxRequestSize: String = "64M"

    @Option(help: "Threads that run models (default: one per core).")
    var runnerThreads: Int?

    @Option(help: "Event loop threads for HTTP (default: one per core).")
    var httpThreads: Int?

    @Option(help: "Seconds a shutdown may spend draining in-flight requests.")
    var drainTimeout: Int = 30

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @OptionGroup var runtimeOptions: RuntimeOptions

    func validate() throws {
        guard (0...65535).contains(httpPort) else { throw ValidationError("--http-port must be 0...65535") }
        guard grpcPort == -1 || (0...65535).contains(grpcPort) else {
            throw ValidationError("--grpc-port must be 0...65535, or -1 for no gRPC")
        }
        _ = try parseSize(maxRequestSize)
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of: trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tern")
        let runtime = runtimeOptions.openRuntime()
        var configuration = ServerConfiguration(modelsDirectory: models)
        configuration.host = host
        configuration.httpPort = httpPort
        configuration.grpcPort = grpcPort < 0 ? nil : grpcPort
        configuration.http.maxRequestBytes = try parseSize(maxRequestSize)
        configuration.sessionOptions = try runtimeOptions.sessionOptions()
        if let runnerThreads { configuration.runnerThreads = max(1, runnerThreads) }
        if let httpThreads { configuration.httpThreads = max(1, httpThreads) }
        configuration.drainTimeout = .seconds(drainTimeout)
        logger.info("onnxruntime", metadata: ["library": "\(runtime.libraryPath)", "version": "\(runtime.version)"])
        do {
            try await TernServer(configuration: configuration, runtime: runtime, logger: logger).run(
                onHTTPReady: { port in logger.info("serving", metadata: ["http": "\(host):\(port)"]) },
                onGRPCReady: { port in logger.info("serving", metadata: ["grpc": "\(host):\(port)"]) })
        } catch {
            fail(error)
        }
    }
}

/// Parses "1048576", "64M", "64MiB", "2G" into bytes.
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
    return value * multiplier
}
