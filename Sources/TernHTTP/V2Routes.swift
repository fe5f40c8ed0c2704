import HTTPTypes
import Hummingbird
import NIOCore
import TernCodecs
import TernCore

/// Settings of the HTTP front-end.
public struct HTTPFrontEndConfiguration: Sendable {
    /// The largest request body accepted, in bytes (64 MiB by default; Hummingbird's own default is 2 MiB,
    /// too small for tensors).
    public var maxRequestBytes: Int
    /// How long an event loop may spend running light models' batches itself, per read burst, instead of
    /// handing them to the runner threads (``EventLoopRunQueue``); zero sends every run to the runners.
    public var inlineRunBudget: Duration
    /// Timeouts, the connection cap and the shutdown drain (``ConnectionGuard``).
    public var connections: ConnectionLimits
    /// Who may call what (open by default); every route and the `/infer` fast path ask it.
    public var access: AccessControl = .open
    /// Web origins whose pages may call the server (CORS; `*` for any). Other pages' requests that could
    /// change something are refused (403), so a page a colleague opens cannot unload a model.
    public var allowedOrigins: [String] = []
    /// The names a request's `Host` may give (lowercased, without the port); nil: any. An open server on
    /// loopback sets them, so that a web page whose name a DNS rebinding points at 127.0.0.1 is refused.
    public var allowedHosts: Set<String>?

    public init(
        maxRequestBytes: Int = 64 << 20, inlineRunBudget: Duration = .microseconds(200),
        connections: ConnectionLimits = .init()
    ) {
        self.maxRequestBytes = maxRequestBytes
        self.inlineRunBudget = inlineRunBudget
        self.connections = connections
    }
}

extension HTTPFrontEndConfiguration {
    /// The whole request body, refused with `payloadTooLarge` (413) past ``maxRequestBytes``.
    func collectBody(_ request: Request) async throws -> ByteBuffer {
        try await Self.collectBody(request, upTo: maxRequestBytes, flag: "--max-request-size")
    }

    /// A request's whole body, refused with `payloadTooLarge` (413) past `limit`, naming the flag that raises it.
    public static func collectBody(_ request: Request, upTo limit: Int, flag: String) async throws -> ByteBuffer {
        try refuseByLength(request.headers, upTo: limit, flag: flag)
        do {
            return try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw tooLarge(nil, limit: limit, flag: flag)
        }
    }
}

extension HTTPFrontEndConfiguration {
    /// Refuses a body by its declared `Content-Length` before any of it is read (the connection then closes:
    /// ``ConnectionGuard`` closes after every 413).
    public static func refuseByLength(_ headers: HTTPFields, upTo limit: Int, flag: String) throws(TernError) {
        guard let text = headers.value(.contentLength) else { return }
        guard let length = Int(text), length >= 0 else {
            throw .invalidArgument("Content-Length is not a byte count: '\(Echo.clip(text))'")
        }
        if length > limit { throw tooLarge(length, limit: limit, flag: flag) }
    }

    public static func tooLarge(_ length: Int?, limit: Int, flag: String) -> TernError {
        TernError(
            .payloadTooLarge,
            "the request body"
                + (length.map { " (\($0) bytes)" } ?? "") + " is larger than the limit of \(limit) bytes (raise it with \(flag))")
    }
}

extension HTTPField.Name {
    /// Triton's binary tensor data extension: the length of the JSON part of a body.
    static let inferenceHeaderContentLength = Self("Inference-Header-Content-Length")!
    /// The request's id: the client's, honoured, or one Tern made; in every inference answer.
    static let requestID = Self("X-Request-ID")!
    /// W3C Trace Context.
    static let traceparent = Self("traceparent")!
}

extension V2Routes {
    /// A request's context from its HTTP head: `X-Request-ID` and `traceparent` honoured.
    static func callContext(_ wire: WireProtocol, _ headers: HTTPFields, peer: String?) -> CallContext {
        CallContext(wire: wire, requestID: headers.value(.requestID), traceparent: headers.value(.traceparent), peer: peer)
    }
}

/// The Open Inference Protocol v2 REST surface: health, server and model metadata, readiness, statistics,
/// configuration. Inference (`POST .../infer`) is served in the channel pipeline by ``V2InferFastPath``
/// (``inferFastPath(service:configuration:)``), which every server must install.
///
/// A thin translation between HTTP and ``InferenceService``: decode, call the core, encode.
public struct V2Routes: Sendable {
    let service: InferenceService
    let configuration: HTTPFrontEndConfiguration

    /// Extensions advertised by `GET /v2`.
    static let extensions = ["binary_tensor_data", "model_configuration", "statistics"]

    public init(service: InferenceService, configuration: HTTPFrontEndConfiguration = .init()) {
        self.service = service
        self.configuration = configuration
    }

    /// Adds the routes, and the error middleware that gives every error a JSON body, to `router`. The context
    /// type is concrete so that the handlers are specialised (no generic metadata lookups per request).
    public func register(on router: ScopedRouter) {
        router.router.middlewares.add(ErrorMiddleware<BasicRequestContext>(routes: router.table))
        // Served by the channel's fast path (``V2InferFastPath``), which checks the same scope.
        for path in ["/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer"] {
            router.table.add(RouteEntry(method: "POST", path: path, scope: .infer))
        }
        router.get("/v2/health/live", nil) { _, _ in json(.ok, "{\"live\":true}") }
        router.get("/v2/health/ready", nil) { _, _ in
            service.isReady ? json(.ok, "{\"ready\":true}") : json(.serviceUnavailable, "{\"ready\":false}")
        }
        RepositoryRoutes(service: service, configuration: configuration).register(on: router)
        router.on("/v2", method: .get, scope: .read, aboutNoModel: true) { _, _ in serverMetadata() }
        router.get("/v2/models/{model}", .read) { _, context in try modelMetadata(context, version: nil) }
        router.get("/v2/models/{model}/versions/{version}", .read) { _, context in
            try modelMetadata(context, version: context.parameters.require("version"))
        }
        router.get("/v2/models/{model}/ready", .read) { _, context in try modelReady(context, version: nil) }
        router.get("/v2/models/{model}/versions/{version}/ready", .read) { _, context in
            try modelReady(context, version: context.parameters.require("version"))
        }
        router.get("/v2/models/stats", .read) { _, _ in try statistics(name: nil, version: nil) }
        router.get("/v2/models/{model}/stats", .read) { _, context in
            try statistics(name: context.parameters.require("model"), version: nil)
        }
        router.get("/v2/models/{model}/versions/{version}/stats", .read) { _, context in
            try statistics(name: context.parameters.require("model"), version: context.parameters.require("version"))
        }
        router.get("/v2/models/{model}/config", .read) { _, context in try modelConfig(context, version: nil) }
        router.get("/v2/models/{model}/versions/{version}/config", .read) { _, context in
            try modelConfig(context, version: context.parameters.require("version"))
        }
    }

    // MARK: - Handlers

    private func serverMetadata() -> Response {
        var writer = JSONWriter()
        writer.raw("{\"name\":")
        writer.string(TernVersion.name)
        writer.raw(",\"version\":")
        writer.string(TernVersion.version)
        writer.raw(",\"extensions\":[")
        for (index, name) in (Self.extensions + (service.repository == nil ? [] : ["model_repository"])).enumerated() {
            if index > 0 { writer.byte(UInt8(ascii: ",")) }
            writer.string(name)
        }
        writer.raw("]}")
        return json(.ok, writer.buffer)
    }

    private func modelMetadata(_ context: some RequestContext, version: String?) throws -> Response {
        let served = try service.catalog.resolve(name: context.parameters.require("model"), version: version)
        var writer = JSONWriter()
        writer.raw("{\"name\":")
        writer.string(served.name)
        writer.raw(",\"versions\":[")
        for (index, number) in service.catalog.versions(of: served.name).enumerated() {
            if index > 0 { writer.byte(UInt8(ascii: ",")) }
            writer.string(String(number))
        }
        writer.raw("],\"platform\":")
        writer.string(served.platform)
        writer.raw(",\"inputs\":")
        tensorSpecs(served.model.signature.inputs, into: &writer)
        writer.raw(",\"outputs\":")
        tensorSpecs(served.model.signature.outputs, into: &writer)
        writer.byte(UInt8(ascii: "}"))
        return json(.ok, writer.buffer)
    }

    private func tensorSpecs(_ specs: [TensorSpec], into writer: inout JSONWriter) {
        writer.byte(UInt8(ascii: "["))
        for (index, spec) in specs.enumerated() {
            if index > 0 { writer.byte(UInt8(ascii: ",")) }
            writer.tensorHeader(name: spec.name, datatype: spec.datatype, shape: spec.shape)
            writer.byte(UInt8(ascii: "}"))
        }
        writer.byte(UInt8(ascii: "]"))
    }

    private func modelReady(_ context: some RequestContext, version: String?) throws -> Response {
        let served = try service.catalog.resolve(name: context.parameters.require("model"), version: version)
        var writer = JSONWriter()
        writer.raw("{\"name\":")
        writer.string(served.name)
        writer.raw(",\"version\":")
        writer.string(String(served.version))
        writer.raw(service.isReady ? ",\"ready\":true}" : ",\"ready\":false}")
        return json(service.isReady ? .ok : .serviceUnavailable, writer.buffer)
    }

    /// The statistics extension (`GET /v2/models[/{m}[/versions/{v}]]/stats`), which tritonclient's
    /// `get_inference_statistics` reads: Triton's JSON shape, from ``ModelStatistics``.
    private func statistics(name: String?, version: String?) throws -> Response {
        var writer = JSONWriter()
        writer.raw("{\"model_stats\":[")
        for (index, served) in try service.catalog.selection(name: name, version: version).enumerated() {
            let stats = served.statistics.snapshot
            if index > 0 { writer.byte(UInt8(ascii: ",")) }
            writer.raw("{\"name\":")
            writer.string(served.name)
            writer.raw(",\"version\":")
            writer.string(String(served.version))
            writer.raw(",\"last_inference\":")
            writer.integer(stats.lastInferenceMilliseconds)
            writer.raw(",\"inference_count\":")
            writer.integer(stats.inferenceCount)
            writer.raw(",\"execution_count\":")
            writer.integer(stats.executionCount)
            writer.raw(",\"inference_stats\":{")
            let zero = ModelStatistics.Counter.zero
            let fields: [(String, ModelStatistics.Counter)] = [
                ("success", stats.success), ("fail", stats.fail), ("queue", stats.queue), ("compute_input", zero),
                ("compute_infer", stats.compute), ("compute_output", zero), ("cache_hit", zero), ("cache_miss", zero),
            ]
            for (position, (key, counter)) in fields.enumerated() {
                if position > 0 { writer.byte(UInt8(ascii: ",")) }
                writer.string(key)
                writer.raw(":{\"count\":")
                writer.integer(counter.count)
                writer.raw(",\"ns\":")
                writer.integer(counter.nanoseconds)
                writer.byte(UInt8(ascii: "}"))
            }
            writer.raw("},\"batch_stats\":[]}")
        }
        writer.raw("]}")
        return json(.ok, writer.buffer)
    }

    /// Triton's model configuration (`GET .../config`), which tritonclient's `get_model_config` reads: the
    /// version's ``ModelDescription``, as gRPC's `ModelConfig` encodes it too.
    private func modelConfig(_ context: some RequestContext, version: String?) throws -> Response {
        let description = ModelDescription(try service.catalog.resolve(name: context.parameters.require("model"), version: version))
        var writer = JSONWriter()
        writer.raw("{\"name\":")
        writer.string(description.name)
        writer.raw(",\"platform\":")
        writer.string(description.platform)
        writer.raw(",\"backend\":")
        writer.string(description.backend)
        writer.raw(",\"max_batch_size\":")
        writer.integer(description.maxBatchSize)
        for (key, tensors) in [("input", description.inputs), ("output", description.outputs)] {
            writer.raw(",\"")
            writer.buffer.writeString(key)
            writer.raw("\":[")
            for (index, tensor) in tensors.enumerated() {
                if index > 0 { writer.byte(UInt8(ascii: ",")) }
                writer.raw("{\"name\":")
                writer.string(tensor.name)
                writer.raw(",\"data_type\":")
                writer.string(tensor.dataType)
                writer.raw(",\"dims\":")
                writer.integers(tensor.dims)
                writer.byte(UInt8(ascii: "}"))
            }
            writer.byte(UInt8(ascii: "]"))
        }
        if let batching = description.dynamicBatching {
            writer.raw(",\"dynamic_batching\":{\"preferred_batch_size\":")
            writer.integers(batching.preferredBatchSizes)
            writer.raw(",\"max_queue_delay_microseconds\":")
            writer.buffer.writeString(String(batching.maxQueueDelayMicroseconds))
            writer.byte(UInt8(ascii: "}"))
        }
        writer.byte(UInt8(ascii: "}"))
        return json(.ok, writer.buffer)
    }

    /// What an infer request's head decides before its body is read: the model version (so an unknown one is
    /// reported first) and the binary extension's JSON length. Used by ``V2InferFastPath``, where `/infer` is served.
    static func inferHead(service: InferenceService, model: String, version: String?, headers: HTTPFields, context: CallContext? = nil)
        throws(TernError) -> (ServedModel, Int?)
    {
        let served = try service.resolve(model: model, version: version, context: context) { name in
            HTTPField.Name(name).flatMap { headers.value($0) }
        }
        var headerLength: Int?
        if let value = headers.value(.inferenceHeaderContentLength) {
            guard let length = Int(value.trimmingCharacters(in: .whitespaces)), length >= 0 else {
                throw .invalidArgument("Inference-Header-Content-Length must be a non-negative integer, got '\(value)'")
            }
            headerLength = length
        }
        if let encoding = headers.value(.contentEncoding), encoding.lowercased() != "identity" {
            throw .invalidArgument("Content-Encoding '\(encoding)' is not supported; send the body uncompressed")
        }
        return (served, headerLength)
    }

    /// The answer's headers and body: JSON, or JSON followed by binary outputs.
    static func inferAnswer(_ response: InferenceResponse, encoding: V2RequestDecoder.OutputEncoding) -> (HTTPFields, ByteBuffer) {
        let (buffer, jsonLength) = V2ResponseEncoder.encode(response, encoding: encoding)
        var headers = HTTPFields()
        if let jsonLength {
            headers.append(HTTPField(name: .contentType, value: "application/octet-stream"))
            headers.append(HTTPField(name: .inferenceHeaderContentLength, value: String(jsonLength)))
        } else {
            headers.append(HTTPField(name: .contentType, value: "application/json"))
        }
        return (headers, buffer)
    }
}

private func json(_ status: HTTPResponse.Status, _ text: String) -> Response {
    json(status, ByteBuffer(string: text))
}

private func json(_ status: HTTPResponse.Status, _ buffer: ByteBuffer) -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: buffer))
}
