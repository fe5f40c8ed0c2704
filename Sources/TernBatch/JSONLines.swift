import Foundation
import TernCore

/// JSON Lines input: each line an object keyed by column name, turned into the CSV line the rest of the
/// batch path reads (a value's text, quoted where CSV needs it; `null` is a missing value).
enum JSONLines {
    /// Whether a path names JSON Lines (`.jsonl`, `.ndjson`, compressed or not).
    static func isJSONLines(_ path: String) -> Bool {
        let plain = path.hasSuffix(".gz") ? String(path.dropLast(3)) : path
        return plain.hasSuffix(".jsonl") || plain.hasSuffix(".ndjson")
    }

    /// The columns of a JSON Lines input: the first object's keys, sorted (JSON objects have no order).
    static func header(_ line: ArraySlice<UInt8>) throws(TernError) -> [String] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], !object.isEmpty else {
            throw .invalidArgument("the first line of a JSON Lines input must be an object keyed by column name")
        }
        return object.keys.sorted()
    }

    /// The chunk as CSV lines over `header`, and why the lines that are not such an object were rejected.
    static func transcode(_ chunk: LineChunk, header: [String]) -> (LineChunk, [Int: String]) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(chunk.bytes.count)
        var starts = [0]
        var rejects: [Int: String] = [:]
        for i in 0..<chunk.lineCount {
            let line = chunk.line(i)
            if !line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) {
                if let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] {
                    if let missing = header.first(where: { object[$0] == nil }) {
                        rejects[i] = "has no '\(Echo.clip(missing))'"
                        bytes.append(UInt8(ascii: "x"))  // a placeholder: the line is rejected
                    } else {
                        for (c, name) in header.enumerated() {
                            if c > 0 { bytes.append(UInt8(ascii: ",")) }
                            bytes.append(contentsOf: text(object[name]!))
                        }
                    }
                } else {
                    rejects[i] = "is not a JSON object"
                    bytes.append(UInt8(ascii: "x"))
                }
            }
            bytes.append(UInt8(ascii: "\n"))
            starts.append(bytes.count)
        }
        var csv = chunk
        csv.bytes = bytes
        csv.lineStarts = starts
        return (csv, rejects)
    }

    private static func text(_ value: Any) -> [UInt8] {
        switch value {
        case is NSNull: return []
        case let number as NSNumber:
            let text = number.stringValue
            return Array((text == "true" ? "1" : text == "false" ? "0" : text).utf8)
        case let text as String:
            return ChunkScorer.csvQuoted(text)
        default:
            return ChunkScorer.csvQuoted(String(describing: value))
        }
    }
}
