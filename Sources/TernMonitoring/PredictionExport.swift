import Foundation
import TernCore
import TernModels
import TernRegistry

/// Prediction records as files: JSON Lines (one record per line, as the API writes records) or CSV (one
/// line per predicted row: time, request_id, model, version, protocol, latency_ms, row, then each input
/// field under its own name and each output field as `prediction.<name>`, in the order the record holds
/// them; plain values, as the reference data holds them).
public enum PredictionExport {
    public enum Format: String, Sendable, CaseIterable {
        case csv, jsonl
    }

    /// The text of `records`; `header` for the first page of a CSV. With `labels` (a request id's ground truth,
    /// one per row), a CSV ends each row with a `labelColumn` column (empty where no feedback came): never
    /// the same name as an output, which are all `prediction.<name>`.
    public static func text(
        _ records: [PredictionRecord], format: Format, header: Bool = true, labels: [String: [String]]? = nil,
        labelColumn: String = "label"
    ) -> String {
        switch format {
        case .jsonl:
            return records.map { PredictionJSON.line($0) + "\n" }.joined()
        case .csv:
            var columns: [String]?
            var out = ""
            for record in records {
                let inputs = RowScanner.rows(record.inputs)
                let outputs = RowScanner.rows(record.outputs)
                for row in 0..<max(inputs.count, outputs.count) {
                    let input = row < inputs.count ? inputs[row] : []
                    let output = (row < outputs.count ? outputs[row] : []).map { key, value in ("prediction." + key, value) }
                    if columns == nil {
                        columns = input.map(\.0) + output.map(\.0)
                        if header {
                            out +=
                                (["time", "request_id", "model", "version", "protocol", "latency_ms", "row"] + columns!
                                + (labels == nil ? [] : [labelColumn])).map(cell).joined(separator: ",") + "\n"
                        }
                    }
                    let values = Dictionary(input + output, uniquingKeysWith: { first, _ in first })
                    let fixed = [
                        PredictionTime.format(record.time), record.requestID, record.model, String(record.version),
                        record.protocol, String(Double(record.latencyMicroseconds) / 1000), String(row),
                    ]
                    var cells = fixed.map(cell) + columns!.map { values[$0].map(value) ?? "" }
                    if let labels {
                        let truth = labels[record.requestID] ?? []
                        cells.append(row < truth.count ? cell(truth[row]) : "")
                    }
                    out += cells.joined(separator: ",") + "\n"
                }
            }
            return out
        }
    }

    /// A JSON value as a CSV cell: strings unquoted, numbers and booleans as written, arrays as JSON.
    private static func value(_ json: String) -> String {
        if json.hasPrefix("\""), let data = json.data(using: .utf8),
            let text = try? JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed) as? String
        {
            return cell(text)
        }
        return cell(json)
    }

    private static func cell(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// Reads the prediction log's row JSON (`[{"k": v, ...}, ...]` or one `{...}`) into rows of (key, value's
/// JSON text), keys in the order written (Foundation's JSON reader forgets it).
package enum RowScanner {
    package static func rows(_ json: String) -> [[(String, String)]] {
        let bytes = Array(json.utf8)
        var index = 0
        skipSpace(bytes, &index)
        guard index < bytes.count else { return [] }
        if bytes[index] == UInt8(ascii: "{") { return [object(bytes, &index)] }
        guard bytes[index] == UInt8(ascii: "[") else { return [] }
        index += 1
        var rows: [[(String, String)]] = []
        while index < bytes.count {
            skipSpace(bytes, &index)
            guard index < bytes.count else { break }
            switch bytes[index] {
            case UInt8(ascii: "{"): rows.append(object(bytes, &index))
            case UInt8(ascii: ","): index += 1
            default: return rows  // "]" or anything unexpected
            }
        }
        return rows
    }

    private static func object(_ bytes: [UInt8], _ index: inout Int) -> [(String, String)] {
        var pairs: [(String, String)] = []
        index += 1  // {
        while index < bytes.count {
            skipSpace(bytes, &index)
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                if index < bytes.count, bytes[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                index += 1  // }
                return pairs
            }
            let keyStart = index
            skipValue(bytes, &index)
            let keyText = String(decoding: bytes[keyStart..<index], as: UTF8.self)
            let key = (try? JSONSerialization.jsonObject(with: Data(keyText.utf8), options: .fragmentsAllowed) as? String) ?? keyText
            skipSpace(bytes, &index)
            index += 1  // :
            skipSpace(bytes, &index)
            let valueStart = index
            skipValue(bytes, &index)
            pairs.append((key, String(decoding: bytes[valueStart..<index], as: UTF8.self)))
        }
        return pairs
    }

    private static func skipSpace(_ bytes: [UInt8], _ index: inout Int) {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }

    /// Moves past one JSON value: a string, a balanced array or object, or a bare word or number.
    private static func skipValue(_ bytes: [UInt8], _ index: inout Int) {
        guard index < bytes.count else { return }
        if bytes[index] == UInt8(ascii: "\"") {
            index += 1
            while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                index += bytes[index] == UInt8(ascii: "\\") ? 2 : 1
            }
            index += 1
            return
        }
        if bytes[index] == UInt8(ascii: "[") || bytes[index] == UInt8(ascii: "{") {
            var depth = 0
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\""):
                    skipValue(bytes, &index)
                    continue
                case UInt8(ascii: "["), UInt8(ascii: "{"): depth += 1
                case UInt8(ascii: "]"), UInt8(ascii: "}"):
                    depth -= 1
                    if depth == 0 {
                        index += 1
                        return
                    }
                default: break
                }
                index += 1
            }
            return
        }
        while index < bytes.count, ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x0A].contains(bytes[index]) {
            index += 1
        }
    }
}
