import Foundation
import HTTPTypes
import Hummingbird
import Synchronization
import NIOCore
import TernCore
import TernHTTP
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
            let limit = try query.get("limit").map { text throws(TernError) -> Int in
                guard let value = Int(text), (1...10_000).contains(value) else {
                    throw .invalidArgument("limit must be 1...10000, got '\(Echo.clip(text))'")
                }
                return value
            } ?? 1_000
            let after = try query.get("after").map { text throws(TernError) -> Int64 in
                guard let value = Int64(text), value >= 0 else { throw .invalidArgument("after must be a record id, got '\(Echo.clip(text))'") }
                return value
            } ?? 0
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

/// Opens the reading connection once, on first use.
final class PredictionReader: Sendable {
    private let opened = AtomicLazyReference<SinkBox>()
    /// The prediction log's key file, when its records are encrypted.
    let cipher: PayloadCipher?

    init(cipher: PayloadCipher? = nil) {
        self.cipher = cipher
    }

    func store(_ location: PredictionLogLocation) async throws(TernError) -> any PredictionSink {
        if let box = opened.load() { return box.sink }
        let box = SinkBox(try await location.open(cipher: cipher))
        if opened.storeIfNil(box) !== box { await box.sink.close() }
        return opened.load()!.sink
    }

    func close() async {
        await opened.load()?.sink.close()
    }
}

/// Prediction records as JSON: `{"predictions": [{"time": "...", "request_id": ..., "inputs": [...], ...}], "next": ID}`.
public enum PredictionJSON {
    public static func object(records: [PredictionRecord], next: Int64?) -> String {
        var text = "{\"predictions\":["
        for (index, record) in records.enumerated() {
            if index > 0 { text += "," }
            text += line(record)
        }
        text += "]"
        if let next { text += ",\"next\":\(next)" }
        return text + "}"
    }

    /// One record as one JSON object (a JSON Lines line).
    public static func line(_ record: PredictionRecord) -> String {
        var text = "{\"time\":"
        LineLogHandler.append(PredictionTime.format(record.time), to: &text)
        text += ",\"request_id\":"
        LineLogHandler.append(record.requestID, to: &text)
        text += ",\"model\":"
        LineLogHandler.append(record.model, to: &text)
        text += ",\"version\":\(record.version),\"protocol\":"
        LineLogHandler.append(record.protocol, to: &text)
        text += ",\"latency_ms\":\(Double(record.latencyMicroseconds) / 1000)"
        if let caller = record.caller {
            text += ",\"caller\":"
            LineLogHandler.append(caller, to: &text)
        }
        if let trace = record.traceID {
            text += ",\"trace_id\":"
            LineLogHandler.append(trace, to: &text)
        }
        text += ",\"inputs\":" + record.inputs + ",\"outputs\":" + record.outputs + "}"
        return text
    }
}

/// Times of the prediction log: milliseconds since the epoch inside, RFC 3339 outside.
public enum PredictionTime {
    public static func format(_ milliseconds: Int64) -> String {
        let date = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        return date.formatted(.iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true)
            .timeSeparator(.colon).timeZone(separator: .omitted)) 
    }

    /// Times a client may name: the years 1 to 9999, in milliseconds since the epoch.
    static let range: ClosedRange<Int64> = -62_135_596_800_000...253_402_300_799_999

    /// An RFC 3339 time (`2026-11-30T08:00:00Z`, `2026-11-30`) or an age before now (`90s`, `15m`, `24h`, `7d`).
    public static func parse(_ text: String, name: String, now: Date = Date()) throws(TernError) -> Int64 {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let unit = trimmed.last, let seconds = ["s": 1.0, "m": 60, "h": 3600, "d": 86400][String(unit)],
           let count = Double(trimmed.dropLast()), count >= 0, count < 1e7 {
            return try OutsideNumber.integer((now.timeIntervalSince1970 - count * seconds) * 1000, name, in: Self.range)
        }
        for style in [Date.ISO8601FormatStyle(includingFractionalSeconds: true), Date.ISO8601FormatStyle()] {
            if let date = try? style.parse(trimmed) { return try OutsideNumber.integer(date.timeIntervalSince1970 * 1000, name, in: Self.range) }
        }
        if let date = try? Date.ISO8601FormatStyle().year().month().day().parse(trimmed) {
            return try OutsideNumber.integer(date.timeIntervalSince1970 * 1000, name, in: Self.range)
        }
        throw .invalidArgument("\(name) '\(Echo.clip(text))' is not a time: give an RFC 3339 time such as "
            + "2026-11-30T08:00:00Z, a date such as 2026-11-30, or an age such as 15m, 24h or 7d")
    }
}
