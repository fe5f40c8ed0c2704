import Foundation
import Hummingbird
import NIOCore
import TernBundle
import TernCore
import TernMonitoring
import TernRegistry

/// Ground truth that arrives after the prediction, and the live quality it gives each version:
///
/// ```
/// POST /api/v1/feedback                      [{"request_id": "...", "label": 1, "time": "..."}] or CSV
/// GET  /api/v1/models/{model}/performance    per version: accuracy ... (classification), MAE ... (regression)
/// ```
/// Feedback is joined with the prediction log by request id: the id a prediction's answer carried
/// (`X-Request-ID`). `label` (a class) or `value` (a number) may be an array, one per row of the request.
/// Feedback for an id the log does not know is not stored and is reported back; feedback sent again for the
/// same id replaces the earlier (the last wins). The routes only translate: ``LiveFeedback`` does the work.
struct FeedbackRoutes {
    let feedback: LiveFeedback
    let http: HTTPFrontEndConfiguration

    func register(on router: ScopedRouter) {
        router.post("/api/v1/feedback", .infer) { request, _ in
            let body = try await HTTPFrontEndConfiguration.collectBody(request, upTo: http.maxRequestBytes, flag: "--max-request-size")
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let contentType = request.headers[.contentType]?.lowercased() ?? ""
            let items =
                contentType.hasPrefix("text/csv")
                ? try FeedbackParser.csv(String(buffer: body), received: now)
                : try FeedbackParser.json(Data(buffer: body), received: now)
            let unknown = try await feedback.add(items, caller: CurrentCaller.value)
            var text = "{\"accepted\":\(Set(items.map(\.requestID)).count - unknown.count),\"unknown\":\(unknown.count)"
            text += ",\"unknown_request_ids\":["
            text += unknown.prefix(100).map { id in
                var quoted = ""
                JSONText.appendQuoted(id, to: &quoted)
                return quoted
            }.joined(separator: ",")
            text += "]}"
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("/api/v1/models/{model}/performance", .read) { request, context in
            let name = try context.parameters.require("model")
            let since = try request.uri.queryParameters.get("since").map { try PredictionTime.parse(String($0), name: "since") }
            let answers = try await feedback.performance(of: name, since: since, newest: nil)
            return SnakeCaseJSON(PerformanceAnswer(model: name, versions: answers))
        }
    }

}
