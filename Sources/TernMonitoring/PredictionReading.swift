import Foundation
import Synchronization
import TernCore
import TernRegistry

/// Opens the reading connection once, on first use.
public final class PredictionReader: Sendable {
    private let opened = AtomicLazyReference<SinkBox>()
    /// The prediction log's key file, when its records are encrypted.
    public let cipher: PayloadCipher?
    /// Run before each read: a server's own log writes what it has queued (read-your-writes).
    private let beforeReading: (@Sendable () async -> Void)?

    public init(cipher: PayloadCipher? = nil, beforeReading: (@Sendable () async -> Void)? = nil) {
        self.cipher = cipher
        self.beforeReading = beforeReading
    }

    public func store(_ location: PredictionLogLocation) async throws(TernError) -> any PredictionSink {
        await beforeReading?()
        if let box = opened.load() { return box.sink }
        let box = SinkBox(try await location.open(cipher: cipher))
        if opened.storeIfNil(box) !== box { await box.sink.close() }
        return opened.load()!.sink
    }

    public func close() async {
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
        JSONText.appendQuoted(PredictionTime.format(record.time), to: &text)
        text += ",\"request_id\":"
        JSONText.appendQuoted(record.requestID, to: &text)
        text += ",\"model\":"
        JSONText.appendQuoted(record.model, to: &text)
        text += ",\"version\":\(record.version),\"protocol\":"
        JSONText.appendQuoted(record.protocol, to: &text)
        text += ",\"latency_ms\":\(Double(record.latencyMicroseconds) / 1000)"
        if let caller = record.caller {
            text += ",\"caller\":"
            JSONText.appendQuoted(caller, to: &text)
        }
        if let trace = record.traceID {
            text += ",\"trace_id\":"
            JSONText.appendQuoted(trace, to: &text)
        }
        text += ",\"inputs\":" + record.inputs + ",\"outputs\":" + record.outputs + "}"
        return text
    }
}

/// Times of the prediction log: milliseconds since the epoch inside, RFC 3339 outside.
public enum PredictionTime {
    public static func format(_ milliseconds: Int64) -> String {
        let date = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        return date.formatted(
            .iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true)
                .timeSeparator(.colon).timeZone(separator: .omitted))
    }

    /// Times a client may name: the years 1 to 9999, in milliseconds since the epoch.
    public static let range: ClosedRange<Int64> = -62_135_596_800_000...253_402_300_799_999

    /// An RFC 3339 time (`2026-11-30T08:00:00Z`, `2026-11-30`) or an age before now (`90s`, `15m`, `24h`, `7d`).
    public static func parse(_ text: String, name: String, now: Date = Date()) throws(TernError) -> Int64 {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let unit = trimmed.last, let seconds = ["s": 1.0, "m": 60, "h": 3600, "d": 86400][String(unit)],
            let count = Double(trimmed.dropLast()), count >= 0, count < 1e7
        {
            return try OutsideNumber.integer((now.timeIntervalSince1970 - count * seconds) * 1000, name, in: Self.range)
        }
        for style in [Date.ISO8601FormatStyle(includingFractionalSeconds: true), Date.ISO8601FormatStyle()] {
            if let date = try? style.parse(trimmed) { return try OutsideNumber.integer(date.timeIntervalSince1970 * 1000, name, in: Self.range) }
        }
        if let date = try? Date.ISO8601FormatStyle().year().month().day().parse(trimmed) {
            return try OutsideNumber.integer(date.timeIntervalSince1970 * 1000, name, in: Self.range)
        }
        throw .invalidArgument(
            "\(name) '\(Echo.clip(text))' is not a time: give an RFC 3339 time such as "
                + "2026-11-30T08:00:00Z, a date such as 2026-11-30, or an age such as 15m, 24h or 7d")
    }
}
