import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization
import TernCore
import TernMonitoring
import TernRegistry

/// Reading the prediction log back:
///
/// ```
/// GET /api/v1/predictions/{request_id}                        the records of one request
/// GET /api/v1/predictions?model=M&since=T&until=T&after=ID&limit=N   records in order, paged by `next`
/// GET /api/v1/predictions?...&format=csv|jsonl                   the same as a file (next page: Tern-Next-After)
/// ```
/// `since`/`until` take RFC 3339 times or ages (`15m`, `24h`, `7d`). Records carry their inputs and outputs
/// as JSON (one object per row, keyed by feature or tensor name).
struct PredictionRoutes: Sendable {
    let location: PredictionLogLocation
    /// The reader's own connection, opened at the first read; the server closes it when it stops.
    let reader: PredictionReader

    func register(on router: ScopedRouter) {
        let api = router.group("/api/v1")
        api.get("/predictions/{request_id}", .read) { _, context in
            let id = try context.parameters.require("request_id")
            let records = try await reader.store(location).records(requestID: id)
            guard !records.isEmpty else {
                throw TernError.notFound("no prediction with request id '\(Echo.clip(id))' in the prediction log")
            }
            return json(PredictionJSON.object(records: records, next: nil))
        }
        api.get("/predictions", .read) { request, _ in
            let query = request.uri.queryParameters
            let limit = try query.get("limit").map { try Int(OutsideNumber.integer(text: $0, "limit", in: 1...10_000)) } ?? 1_000
            let after = try query.get("after").map { try OutsideNumber.integer(text: $0, "after (a record id)", in: 0...Int64.max) } ?? 0
            let since = try query.get("since").map { try PredictionTime.parse(String($0), name: "since") }
            let until = try query.get("until").map { try PredictionTime.parse(String($0), name: "until") }
            let format = try query.get("format").map { text throws(TernError) -> PredictionExport.Format in
                guard let format = PredictionExport.Format(rawValue: String(text)) else {
                    throw .invalidArgument("format must be csv or jsonl (or absent, for JSON), got '\(Echo.clip(text))'")
                }
                return format
            }
            let page = try await reader.store(location).records(
                model: query.get("model").map { String($0) }, since: since, until: until, afterID: after, limit: limit)
            let next = page.count == limit ? page.last?.id : nil
            guard let format else { return json(PredictionJSON.object(records: page.map(\.record), next: next)) }
            // Files: the next page's `after` in a header, the CSV header only on the first page.
            var headers: HTTPFields = [.contentType: format == .csv ? "text/csv" : "application/x-ndjson"]
            if let next { headers[HTTPField.Name("Tern-Next-After")!] = String(next) }
            let text = PredictionExport.text(page.map(\.record), format: format, header: after == 0)
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
        }
    }

    private func json(_ text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
