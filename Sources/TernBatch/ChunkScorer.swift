import Foundation
import TernCore

/// What came of one chunk: its output lines and rejects, ready to append in order.
public struct ScoredChunk: Sendable {
    public var index: Int
    public var end: Int64
    public var nextLine: Int
    public var output: [UInt8]
    public var rejects: [UInt8]
    public var rows: Int
    public var rejected: Int
    /// Columns each output filled per row (known once a chunk ran).
    public var widths: [Int]?
}

public enum OutputFormat: String, Sendable, CaseIterable {
    case csv, jsonl
}

/// Parses a chunk's lines into the model's inputs (a line that does not parse is a reject with its line
/// number and reason), runs the model once on the chunk, and formats each row's output.
public struct ChunkScorer: Sendable {
    public let plan: BatchPlan
    public let model: any InferenceModel
    public let format: OutputFormat
    /// The names each output's columns go under, in JSON Lines (CSV writes them once, in the header).
    public let labels: [String]?
    /// Whether each chunk's output is compressed (one gzip member per chunk).
    public let gzip: Bool
    /// Where parsing and formatting run (a server's low-priority threads); nil: the calling task.
    public let executor: (any BlockingExecutor)?

    public init(
        plan: BatchPlan, model: any InferenceModel, format: OutputFormat, labels: [String]?, gzip: Bool = false,
        executor: (any BlockingExecutor)? = nil
    ) {
        self.plan = plan
        self.model = model
        self.format = format
        self.labels = labels
        self.gzip = gzip
        self.executor = executor
    }

    /// Runs `work` on the executor when there is one.
    private func onExecutor<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        guard let executor else { return try work() }
        return try await withCheckedThrowingContinuation { continuation in
            let queued = executor.execute { continuation.resume(with: Result { try work() }) }
            if !queued { continuation.resume(throwing: TernError.unavailable("the batch threads have stopped")) }
        }
    }

    struct Parsed: Sendable {
        var accepted: [Int]
        var rejects: [UInt8]
        var rejected: Int
        var tensors: [Tensor]
        /// The accepted rows' features, for an explainer (a one-matrix model only).
        var features: [[Double]]
    }

    /// Explains rows: for each, its top features by the size of their attribution (name, value). Given the
    /// rows' input tensors (a per-column model's) and, for a one-matrix model, their features.
    public typealias RowExplainer = @Sendable (_ inputs: [Tensor], _ features: [[Double]]) async throws -> [[(feature: String, value: Double)]]

    /// Whether the input is JSON Lines (each line transcoded to CSV over the plan's header first).
    public var jsonLines = false

    /// Adds each row's top attributions to the output (`--explain N`).
    public var explainer: RowExplainer?
    public var explainTop = 0

    func parse(_ chunk: LineChunk, original: LineChunk, rejected early: [Int: String]) throws -> Parsed {
        var accepted: [Int] = []
        accepted.reserveCapacity(chunk.lineCount)
        var rejects: [UInt8] = []
        var rejected = 0
        let columnCount = plan.header.count
        var columns = Columns(plan: plan, capacity: chunk.lineCount)
        chunk.bytes.withUnsafeBufferPointer { buffer in
            var fields: [Field] = []
            for i in 0..<chunk.lineCount {
                if let reason = early[i] {
                    rejected += 1
                    original.bytes.withUnsafeBufferPointer { raw in
                        Self.reject(line: chunk.firstLine + i, reason: reason, raw: raw[original.lineRange(i)], into: &rejects)
                    }
                    continue
                }
                let line = buffer[chunk.lineRange(i)]
                if line.isEmpty { continue }  // a blank line (the end of a file) is no row
                CSVFields.split(line, into: &fields)
                let reason: String?
                if fields.count != columnCount {
                    reason = "has \(fields.count) values; the header has \(columnCount)"
                } else {
                    reason = columns.append(fields)
                }
                if let reason {
                    rejected += 1
                    Self.reject(line: chunk.firstLine + i, reason: reason, raw: line, into: &rejects)
                } else {
                    accepted.append(i)
                }
            }
        }
        let tensors = accepted.isEmpty ? [] : try columns.tensors(rows: accepted.count)
        var features: [[Double]] = []
        if explainer != nil, case .matrix(_, let used) = plan.feed {
            let width = used.count
            features = stride(from: 0, to: columns.numbers[0].count, by: width).map { Array(columns.numbers[0][$0..<($0 + width)]) }
        }
        return Parsed(accepted: accepted, rejects: rejects, rejected: rejected, tensors: tensors, features: features)
    }

    func format(_ chunk: LineChunk, _ accepted: [Int], _ answers: [Tensor], _ why: [[(feature: String, value: Double)]]?) throws -> [UInt8] {
        let columnsPerRow = answers.map { max(1, $0.shape.count == 2 ? $0.shape[1] : 1) }
        let formatted = try answers.map { tensor throws(TernError) in try Self.texts(tensor) }
        var output: [UInt8] = []
        output.reserveCapacity(accepted.count * 64)
        chunk.bytes.withUnsafeBufferPointer { buffer in
            var fields: [Field] = []
            for (row, i) in accepted.enumerated() {
                if !plan.copied.isEmpty { CSVFields.split(buffer[chunk.lineRange(i)], into: &fields) }
                switch format {
                case .csv:
                    formatCSV(row, fields, formatted, columnsPerRow, into: &output)
                    if let why {
                        for j in 0..<explainTop {
                            output.append(UInt8(ascii: ","))
                            if j < why[row].count {
                                output.append(contentsOf: Self.csvQuoted(why[row][j].feature))
                                output.append(UInt8(ascii: ","))
                                output.append(contentsOf: why[row][j].value.description.utf8)
                            } else {
                                output.append(UInt8(ascii: ","))
                            }
                        }
                    }
                case .jsonl:
                    formatJSON(row, fields, formatted, answers, columnsPerRow, into: &output)
                    if let why {
                        output.removeLast()  // the closing brace
                        output.append(contentsOf: ",\"explanation\":[".utf8)
                        for (j, item) in why[row].prefix(explainTop).enumerated() {
                            if j > 0 { output.append(UInt8(ascii: ",")) }
                            output.append(
                                contentsOf: "{\"feature\":\(Self.jsonString(item.feature)),\"value\":\(Self.jsonNumber(item.value.description))}".utf8
                            )
                        }
                        output.append(contentsOf: "]}".utf8)
                    }
                }
                output.append(UInt8(ascii: "\n"))
            }
        }
        return gzip && !output.isEmpty ? try Gzip.member(output) : output
    }

    public func score(_ original: LineChunk) async throws -> ScoredChunk {
        let (chunk, early) = try await onExecutor {
            jsonLines ? JSONLines.transcode(original, header: plan.header) : (original, [:])
        }
        let parsed = try await onExecutor { try parse(chunk, original: original, rejected: early) }
        var output: [UInt8] = []
        var widths: [Int]?
        if !parsed.accepted.isEmpty {
            let answers = try await model.run(inputs: parsed.tensors, outputs: plan.outputs.map(\.name))
            widths = answers.map { max(1, $0.shape.count == 2 ? $0.shape[1] : 1) }
            let why: [[(feature: String, value: Double)]]? =
                if let explainer { try await explainer(parsed.tensors, parsed.features) } else { nil }
            output = try await onExecutor { try format(chunk, parsed.accepted, answers, why) }
        }
        return ScoredChunk(
            index: chunk.index, end: chunk.end, nextLine: chunk.firstLine + chunk.lineCount, output: output,
            rejects: parsed.rejects, rows: parsed.accepted.count, rejected: parsed.rejected, widths: widths)
    }

    private func formatCSV(_ row: Int, _ fields: [Field], _ formatted: [[String]], _ columnsPerRow: [Int], into output: inout [UInt8]) {
        var first = true
        for c in plan.copied {
            if !first { output.append(UInt8(ascii: ",")) }
            first = false
            output.append(contentsOf: fields[c])
        }
        for (o, values) in formatted.enumerated() {
            let width = columnsPerRow[o]
            for j in 0..<width {
                if !first { output.append(UInt8(ascii: ",")) }
                first = false
                Self.appendCSV(values[row * width + j], to: &output)
            }
        }
    }

    private func formatJSON(
        _ row: Int, _ fields: [Field], _ formatted: [[String]], _ answers: [Tensor], _ columnsPerRow: [Int], into output: inout [UInt8]
    ) {
        output.append(UInt8(ascii: "{"))
        var first = true
        for c in plan.copied {
            if !first { output.append(UInt8(ascii: ",")) }
            first = false
            output.append(contentsOf: Self.jsonString(plan.header[c]).utf8)
            output.append(UInt8(ascii: ":"))
            let text = CSVFields.text(fields[c])
            output.append(contentsOf: (Self.isJSONNumber(text) ? text : Self.jsonString(text)).utf8)
        }
        for (o, values) in formatted.enumerated() {
            if !first { output.append(UInt8(ascii: ",")) }
            first = false
            let spec = plan.outputs[o], width = columnsPerRow[o]
            output.append(contentsOf: Self.jsonString(spec.name).utf8)
            output.append(UInt8(ascii: ":"))
            let json =
                answers[o].datatype == .bytes
                ? (0..<width).map { Self.jsonString(values[row * width + $0]) }
                : (0..<width).map { Self.jsonNumber(values[row * width + $0]) }
            let isMatrix = answers[o].shape.count == 2
            output.append(contentsOf: (isMatrix ? "[" + json.joined(separator: ",") + "]" : json[0]).utf8)
        }
        output.append(UInt8(ascii: "}"))
    }

    /// A value into a CSV line: quoted only when it holds a comma, a quote or a line break.
    @inline(__always)
    static func appendCSV(_ text: String, to output: inout [UInt8]) {
        var text = text
        text.withUTF8 { bytes in
            if bytes.contains(where: { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") })
            {
                output.append(contentsOf: csvQuoted(String(decoding: bytes, as: UTF8.self)))
            } else {
                output.append(contentsOf: bytes)
            }
        }
    }

    /// A rejects-file line: the input line number, the reason, the line itself (CSV).
    static func reject(line: Int, reason: String, raw: Field, into out: inout [UInt8]) {
        out.append(contentsOf: "\(line),".utf8)
        out.append(contentsOf: csvQuoted(reason))
        out.append(UInt8(ascii: ","))
        out.append(contentsOf: csvQuoted(String(decoding: raw, as: UTF8.self)))
        out.append(UInt8(ascii: "\n"))
    }

    /// Each element as text: numbers in their shortest exact form, strings as they are.
    static func texts(_ tensor: Tensor) throws(TernError) -> [String] {
        switch tensor.datatype {
        case .fp32: return (tensor.values(as: Float.self) ?? []).map { $0.description }
        case .fp64: return (tensor.values(as: Double.self) ?? []).map { $0.description }
        case .int64: return (tensor.values(as: Int64.self) ?? []).map { $0.description }
        case .int32: return (tensor.values(as: Int32.self) ?? []).map { $0.description }
        case .int8: return (tensor.values(as: Int8.self) ?? []).map { $0.description }
        case .int16: return (tensor.values(as: Int16.self) ?? []).map { $0.description }
        case .uint8: return (tensor.values(as: UInt8.self) ?? []).map { $0.description }
        case .uint16: return (tensor.values(as: UInt16.self) ?? []).map { $0.description }
        case .uint32: return (tensor.values(as: UInt32.self) ?? []).map { $0.description }
        case .uint64: return (tensor.values(as: UInt64.self) ?? []).map { $0.description }
        case .bool: return (tensor.values(as: Bool.self) ?? []).map { $0 ? "true" : "false" }
        case .fp16: return (tensor.values(as: Float16.self) ?? []).map { Float($0).description }
        case .bytes: return tensor.strings ?? []
        }
    }

    static func csvQuoted(_ text: String) -> [UInt8] {
        let bytes = Array(text.utf8)
        guard bytes.contains(where: { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") })
        else {
            return bytes
        }
        return Array(("\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"").utf8)
    }

    static func jsonString(_ text: String) -> String { JSONText.quoted(text) }

    /// A number for JSON: NaN and infinities (which JSON lacks) as null.
    static func jsonNumber(_ text: String) -> String {
        text == "nan" || text == "-nan" || text == "inf" || text == "-inf" ? "null" : text
    }

    static func isJSONNumber(_ text: String) -> Bool {
        guard let value = Double(text), value.isFinite, let first = text.first else { return false }
        return first == "-" || first.isNumber
            ? !text.contains(where: { $0 == " " || $0 == "+" }) && !(text.hasPrefix("0") && text.count > 1 && !text.hasPrefix("0.")) : false
    }
}

/// The chunk's parsed values, per input (numbers as Double until the tensor is made in the input's datatype).
struct Columns {
    let plan: BatchPlan
    var numbers: [[Double]]
    var strings: [[String]]

    init(plan: BatchPlan, capacity: Int) {
        self.plan = plan
        switch plan.feed {
        case .matrix(_, let columns):
            numbers = [[]]
            numbers[0].reserveCapacity(capacity * columns.count)
            strings = [[]]
        case .columns(let pairs):
            numbers = pairs.map { _ in [] }
            strings = pairs.map { _ in [] }
        }
    }

    /// Appends a row's values; a reason when one does not parse (nothing is appended then).
    mutating func append(_ fields: [Field]) -> String? {
        switch plan.feed {
        case .matrix(let input, let columns):
            let mark = numbers[0].count
            for c in columns {
                guard let value = CSVFields.number(fields[c]) else {
                    numbers[0].removeSubrange(mark...)
                    return Self.notANumber(plan.header[c], fields[c])
                }
                if !Self.fits(value, input.datatype) {
                    numbers[0].removeSubrange(mark...)
                    return Self.notWhole(plan.header[c], value, input.datatype)
                }
                numbers[0].append(value)
            }
        case .columns(let pairs):
            var parsed: [Double] = []
            for (input, c) in pairs where input.datatype != .bytes {
                guard let value = CSVFields.number(fields[c]) else { return Self.notANumber(plan.header[c], fields[c]) }
                if !Self.fits(value, input.datatype) { return Self.notWhole(plan.header[c], value, input.datatype) }
                parsed.append(value)
            }
            var next = 0
            for (i, (input, c)) in pairs.enumerated() {
                if input.datatype == .bytes {
                    strings[i].append(CSVFields.text(fields[c]))
                } else {
                    numbers[i].append(parsed[next])
                    next += 1
                }
            }
        }
        return nil
    }

    private static func notANumber(_ column: String, _ field: Field) -> String {
        "column '\(Echo.clip(column))': '\(Echo.clip(CSVFields.text(field)))' is not a number"
    }

    private static func notWhole(_ column: String, _ value: Double, _ datatype: DataType) -> String {
        "column '\(Echo.clip(column))': \(value) is not a whole number (the model takes \(datatype.rawValue))"
    }

    private static func fits(_ value: Double, _ datatype: DataType) -> Bool {
        switch datatype {
        case .fp32, .fp64, .fp16: true
        default: !value.isNaN && value.rounded() == value && abs(value) < 9.2e18
        }
    }

    func tensors(rows: Int) throws(TernError) -> [Tensor] {
        switch plan.feed {
        case .matrix(let input, let columns):
            return [try Self.tensor(input, numbers[0], [], shape: [rows, columns.count])]
        case .columns(let pairs):
            return try pairs.enumerated().map { (i, pair) throws(TernError) in
                try Self.tensor(pair.input, numbers[i], strings[i], shape: pair.input.shape.count == 2 ? [rows, 1] : [rows])
            }
        }
    }

    private static func tensor(_ input: TensorSpec, _ v: [Double], _ text: [String], shape: [Int]) throws(TernError) -> Tensor {
        let name = input.name
        switch input.datatype {
        case .fp32: return try Tensor(name: name, shape: shape, values: v.map { Float($0) })
        case .fp64: return try Tensor(name: name, shape: shape, values: v)
        case .fp16: return try Tensor(name: name, shape: shape, values: v.map { Float16($0) })
        case .int64: return try Tensor(name: name, shape: shape, values: v.map { Int64($0) })
        case .int32: return try Tensor(name: name, shape: shape, values: v.map { Int32(clamping: Int64($0)) })
        case .int16: return try Tensor(name: name, shape: shape, values: v.map { Int16(clamping: Int64($0)) })
        case .int8: return try Tensor(name: name, shape: shape, values: v.map { Int8(clamping: Int64($0)) })
        case .uint64: return try Tensor(name: name, shape: shape, values: v.map { UInt64(clamping: Int64($0)) })
        case .uint32: return try Tensor(name: name, shape: shape, values: v.map { UInt32(clamping: Int64($0)) })
        case .uint16: return try Tensor(name: name, shape: shape, values: v.map { UInt16(clamping: Int64($0)) })
        case .uint8: return try Tensor(name: name, shape: shape, values: v.map { UInt8(clamping: Int64($0)) })
        case .bool: return try Tensor(name: name, shape: shape, values: v.map { $0 != 0 })
        case .bytes: return try Tensor(name: name, shape: shape, strings: text)
        }
    }
}
