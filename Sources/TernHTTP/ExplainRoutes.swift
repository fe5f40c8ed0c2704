import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TernCodecs
import TernCore
import TernExplain

/// `POST /v2/models/{m}[/versions/{v}]/explain` and KServe v1's `:explain`: translation only.
struct ExplainRoutes {
    let explanations: Explanations
    let http: HTTPFrontEndConfiguration

    func register(on router: ScopedRouter) {
        for path in ["/v2/models/{model}/explain", "/v2/models/{model}/versions/{version}/explain"] {
            router.post(path, .infer) { request, context in
                let model = try context.parameters.require("model"), version = context.parameters.get("version")
                let call = V2Routes.callContext(.v2REST, request.headers, peer: nil)
                call.caller = CurrentCaller.value
                call.operation = .explain
                let requestID = call.requestID
                do {
                    // Found, counted and logged through the core as a prediction is: readiness, the traffic
                    // policy, the caller's grant, the metrics and the prediction log apply.
                    let answer = try await explanations.service.perform(call) {
                        try explanations.service.resolve(model: model, version: version, context: call) { name in
                            HTTPField.Name(name).flatMap { request.headers[$0] }
                        }
                    } decode: { _ in
                        let body = try await HTTPFrontEndConfiguration.collectBody(request, upTo: http.maxRequestBytes, flag: "--max-request-size")
                        return try V2JSON.decodeRequest(Array(buffer: body))
                    } work: { served, decoded in
                        try await explanations.explainRoute(served, decoded)
                    }
                    return Response(
                        status: .ok, headers: [.contentType: "application/json", .requestID: requestID],
                        body: .init(byteBuffer: answer))
                } catch {
                    throw IdentifiedError(error: error, requestID: requestID)
                }
            }
        }
    }
}
