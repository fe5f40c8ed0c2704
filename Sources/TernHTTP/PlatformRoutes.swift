import HTTPTypes
import Hummingbird
import NIOCore
import TernCodecs
import TernCore

/// Settings of the platform routes.
public struct PlatformRoutesConfiguration: Sendable {
    /// The model `/invocations` and the other single-model routes answer with; when nil, the only loaded model.
    public var defaultModel: String?
    /// Extra health routes (GET), such as Vertex AI's `AIP_HEALTH_ROUTE`; `/ping` is always served.
    public var healthRoutes: [String]
    /// Extra prediction routes (POST), such as Vertex AI's `AIP_PREDICT_ROUTE` or Azure ML's `/score`;
    /// `/invocations` is always served.
    public var predictRoutes: [String]

    public init(defaultModel: String? = nil, healthRoutes: [String] = [], predictRoutes: [String] = []) {
        self.defaultModel = defaultModel
        self.healthRoutes = healthRoutes
        self.predictRoutes = predictRoutes
    }
}

/// The other wire formats users' platforms speak, each a thin translation through ``TabularCodec``:
///
/// - KServe v1 / TensorFlow Serving: `GET /v1/models/{m}`, `POST /v1/models/{m}[/versions/{v}]:predict` with
///   `instances` (rows) or `inputs` (columns), answering `{"predictions": [...]}`.
/// - MLflow scoring server and the SageMaker container contract: `GET /ping`, `POST /invocations` with JSON
///   `dataframe_split`, `dataframe_records`, `instances` or `inputs`, or a `text/csv` body; answers
///   `{"predictions": [...]}`, or CSV when the client accepts only `text/csv`.
/// - Vertex AI and Azure ML custom containers: their health and predict routes (configured), same formats.
public struct PlatformRoutes: Sendable {
    /// Explains a decoded request's rows, answering JSON (KServe v1's `:explain`); nil: not offered.
    /// The explanation's JSON answer, and the same explanation as tensors (for the prediction log).
    public typealias Explainer = @Sendable (ServedModel, InferenceRequest) async throws -> (answer: ByteBuffer, outputs: [Tensor])

    let service: InferenceService
    let configuration: PlatformRoutesConfiguration
    let http: HTTPFrontEndConfiguration
    let explainer: Explainer?

    public init(
        service: InferenceService, configuration: PlatformRoutesConfiguration, http: HTTPFrontEndConfiguration = .init(),
        explainer: Explainer? = nil
    ) {
        self.service = service
        self.configuration = configuration
        self.http = http
        self.explainer = explainer
    }

    public func register(on router: ScopedRouter) {
        router.get("/v1/models/{model}", .read) { _, context in
            let model = try context.parameters.require("model")
            // `name:predict` and `name:explain` are POST routes: a GET there is a wrong method (405), not a model.
            if ["predict", "explain"].contains(Self.splitVerb(model).1 ?? "") { throw HTTPError(.notFound) }
            return try v1Status(model)
        }
        // One path node, one parameter name: "{model}" holds "name:predict" here.
        router.post("/v1/models/{model}", .infer) { request, context in
            let (model, verb) = Self.splitVerb(try context.parameters.require("model"))
            if verb == "explain", let explainer { return try await explain(request, explainer, model: model, version: nil) }
            guard verb == "predict" else { throw HTTPError(.notFound) }
            return try await predict(request, context, .kserveV1, model: model, version: nil)
        }
        router.post("/v1/models/{model}/versions/{version}", .infer) { request, context in
            let (version, verb) = Self.splitVerb(try context.parameters.require("version"))
            let model = try context.parameters.require("model")
            if verb == "explain", let explainer { return try await explain(request, explainer, model: model, version: version) }
            guard verb == "predict" else { throw HTTPError(.notFound) }
            return try await predict(request, context, .kserveV1, model: model, version: version)
        }
        for route in ["/ping"] + configuration.healthRoutes {
            router.get(route, nil) { _, _ in health() }
        }
        for route in ["/invocations"] + configuration.predictRoutes {
            router.post(route, .infer) { request, context in
                try await predict(request, context, .invocations, model: nil, version: nil)
            }
        }
    }

    /// "credit-risk:predict" -> ("credit-risk", "predict").
    static func splitVerb(_ component: String) -> (String, String?) {
        guard let colon = component.lastIndex(of: ":") else { return (component, nil) }
        return (String(component[..<colon]), String(component[component.index(after: colon)...]))
    }

    private func health() -> Response {
        let ready = service.isReady
        return Response(
            status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: ready ? "{\"status\":\"ok\"}" : "{\"status\":\"loading\"}")))
    }

    /// KServe v1 model status, with TensorFlow Serving's `model_version_status` alongside.
    private func v1Status(_ model: String) throws -> Response {
        let served = try service.catalog.resolve(name: model, version: nil)
        var writer = JSONWriter()
        writer.raw("{\"name\":")
        writer.string(served.name)
        writer.raw(service.isReady ? ",\"ready\":true" : ",\"ready\":false")
        writer.raw(",\"model_version_status\":[")
        for (index, version) in service.catalog.versions(of: served.name).enumerated() {
            if index > 0 { writer.byte(UInt8(ascii: ",")) }
            writer.raw("{\"version\":")
            writer.string(String(version))
            writer.raw(",\"state\":\"AVAILABLE\",\"status\":{\"error_code\":\"OK\",\"error_message\":\"\"}}")
        }
        writer.raw("]}")
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: writer.buffer))
    }

    private func defaultModelName() throws(TernError) -> String {
        if let name = configuration.defaultModel { return name }
        let names = service.catalog.modelNames
        guard names.count == 1 else {
            throw .invalidArgument(
                names.isEmpty
                    ? "no model is loaded"
                    : "several models are loaded (\(names.joined(separator: ", "))); choose one with --default-model, "
                        + "or call /v1/models/{name}:predict")
        }
        return names[0]
    }

    private func predict(
        _ request: Request, _ context: BasicRequestContext, _ wire: WireProtocol, model: String?, version: String?
    ) async throws -> Response {
        // Hummingbird's basic context does not carry the peer's address; the v2 infer path has it.
        let call = V2Routes.callContext(wire, request.headers, peer: nil)
        call.caller = CurrentCaller.value
        let requestID = call.requestID
        do {
            var response = try await answer(request, call, model: model, version: version)
            response.headers[.requestID] = requestID
            return response
        } catch {
            throw IdentifiedError(error: error, requestID: requestID)
        }
    }

    /// KServe v1 `:explain`: the same rows as `:predict`, answered with the explanation; found, counted and
    /// logged through the core as a prediction is (``InferenceService/perform(_:resolve:decode:work:)``).
    private func explain(_ request: Request, _ explainer: Explainer, model: String, version: String?) async throws -> Response {
        let call = V2Routes.callContext(.kserveV1, request.headers, peer: nil)
        call.caller = CurrentCaller.value
        call.operation = .explain
        let requestID = call.requestID
        do {
            let answer = try await service.perform(call) {
                try service.resolve(model: model, version: version, context: call) { name in
                    HTTPField.Name(name).flatMap { request.headers[$0] }
                }
            } decode: { served in
                try await decode(request, for: served)
            } work: { served, decoded in
                try await explainer(served, decoded)
            }
            return Response(status: .ok, headers: [.contentType: "application/json", .requestID: requestID], body: .init(byteBuffer: answer))
        } catch {
            throw IdentifiedError(error: error, requestID: requestID)
        }
    }

    /// A body in one of the platform forms (CSV by its content type, else JSON) as a request for `served`.
    private func decode(_ request: Request, for served: ServedModel) async throws -> InferenceRequest {
        let body = try await http.collectBody(request)
        let codec = TabularCodec(signature: served.model.signature, featureNames: served.featureNames)
        let contentType = request.headers[.contentType]?.lowercased() ?? ""
        return contentType.hasPrefix("text/csv")
            ? try PlatformForms.csvRequest(body, codec: codec) : try PlatformForms.jsonRequest(body, codec: codec)
    }

    private func answer(_ request: Request, _ call: CallContext, model: String?, version: String?) async throws -> Response {
        let response = try await service.infer(call) {
            try service.resolve(model: model ?? defaultModelName(), version: version, context: call) { name in
                HTTPField.Name(name).flatMap { request.headers[$0] }
            }
        } decode: { served in
            try await decode(request, for: served)
        }
        // The platform formats have no response parameters: a fallback's answer is marked in a header.
        var headers: HTTPFields = [:]
        if case .string(let reason)? = response.parameters["fallback_reason"] { headers[.ternFallback] = reason }
        if let accept = request.headers[.accept]?.lowercased(), accept.hasPrefix("text/csv") {
            headers[.contentType] = "text/csv"
            return Response(
                status: .ok, headers: headers,
                body: .init(byteBuffer: ByteBuffer(string: TabularCodec.csv(response.outputs))))
        }
        var writer = JSONWriter()
        writer.raw("{\"predictions\":")
        TabularCodec.writePredictions(response.outputs, into: &writer)
        writer.raw(",\"model_name\":")
        writer.string(response.modelName)
        writer.raw(",\"model_version\":")
        writer.string(response.modelVersion)
        writer.byte(UInt8(ascii: "}"))
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: writer.buffer))
    }
}

extension HTTPField.Name {
    /// Set on a platform-format answer that a fallback gave, to why.
    static let ternFallback = HTTPField.Name("Tern-Fallback")!
}
