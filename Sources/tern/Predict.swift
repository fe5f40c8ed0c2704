import ArgumentParser
import Foundation
import TernCore
import TernHTTP
import TernONNX

struct Predict: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model in-process on JSON or CSV input and print the outputs (V2 JSON).",
        discussion: """
            --input takes a file path or the text itself, in one of these forms:
              V2 request JSON   {"inputs":[{"name":"features","datatype":"FP32","shape":[1,10],"data":[...]}]}
              input-name JSON   {"features": [[41, 52000, 0.3, 4, 0, 0, 12000, 6, 8, 0.4]]}
              rows JSON         [[41, 52000, ...], [35, 61000, ...]]        (models with one input)
              CSV               one row per line; a header row naming the model's inputs maps each
                                column to one input, otherwise all columns form the one input's rows
            Datatypes come from the model; shapes from the data. Text that starts with '-' must be
            passed as --input=TEXT.

            Example:
              tern predict --model examples/models/credit-risk/2/model.onnx \\
                --input '[[41, 52000, 0.3, 4, 0, 0, 12000, 6, 8, 0.4]]'
            """)

    @Option(help: ArgumentHelp("The ONNX model file.", valueName: "file"))
    var model: String

    @Option(help: ArgumentHelp("Input: a file path, or JSON/CSV text.", valueName: "json|csv"))
    var input: String

    @Option(help: ArgumentHelp("Input format: json or csv (default: from the file name or the text).", valueName: "format"))
    var format: String?

    @Option(name: .customLong("output"), help: "Output to print (repeat for several; default all).")
    var outputs: [String] = []

    @OptionGroup var runtimeOptions: RuntimeOptions

    func run() async throws {
        let runtime = runtimeOptions.openRuntime()
        let pool = RunnerPool(threads: 1, name: "tern.predict")
        defer { pool.shutdown() }
        do {
            let loaded = try ONNXModel(path: model, runtime: runtime, pool: pool, options: try runtimeOptions.sessionOptions())
            let text = try readInput()
            var request = try InputParser(signature: loaded.signature).parse(text, format: resolvedFormat(text))
            request.outputs = outputs
            let service = InferenceService()
            service.catalog.add(ServedModel(
                name: URL(fileURLWithPath: model).deletingPathExtension().lastPathComponent, version: 1,
                model: loaded, config: ModelConfig(), platform: "onnxruntime_onnx"))
            service.isReady = true
            let response = try await service.infer(model: service.catalog.modelNames[0], version: nil, request: request)
            print(V2JSON.encodeResponse(response))
        } catch let error as ValidationError {
            throw error
        } catch {
            fail(error)
        }
    }

    private func readInput() throws -> String {
        if FileManager.default.fileExists(atPath: input) {
            guard let text = try? String(contentsOfFile: input, encoding: .utf8) else {
                throw TernError.invalidArgument("cannot read '\(input)' as UTF-8 text")
            }
            return text
        }
        return input
    }

    private func resolvedFormat(_ text: String) throws -> InputParser.Format {
        if let format {
            guard let parsed = InputParser.Format(rawValue: format) else {
                throw ValidationError("--format must be json or csv")
            }
            return parsed
        }
        if input.lowercased().hasSuffix(".csv") { return .csv }
        let first = text.first { !$0.isWhitespace }
        return first == "{" || first == "[" ? .json : .csv
    }
}

/// Turns the CLI's friendly input forms into an ``InferenceRequest`` typed by the model's signature.
struct InputParser {
    enum Format: String { case json, csv }
    let signature: ModelSignature

    func parse(_ text: String, format: Format) throws -> InferenceRequest {
        switch format {
        case .csv: return try parseCSV(text)
        case .json: return try parseJSON(text)
        }
    }

    private func parseJSON(_ text: String) throws -> InferenceRequest {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
        } catch {
            throw TernError.invalidArgument("the input is not valid JSON: \(error.localizedDescription)")
        }
        if let map = object as? [String: Any], map["inputs"] != nil {
            return try V2JSON.decodeRequest(Array(text.utf8))
        }
        if let map = object as? [String: Any] {
            var tensors: [Tensor] = []
            for (name, value) in map {
                guard let spec = signature.input(named: name) else {
                    throw TernError.invalidArgument("unknown input '\(name)'; the model's inputs are: "
                        + signature.inputs.map(\.name).joined(separator: ", "))
                }
                tensors.append(try tensor(spec, nested: value))
            }
            return InferenceRequest(inputs: tensors)
        }
        guard signature.inputs.count == 1 else {
            throw TernError.invalidArgument("the model has several inputs; name them: {\"input\": [...], ...}")
        }
        return InferenceRequest(inputs: [try tensor(signature.inputs[0], nested: object)])
    }

    /// A tensor from nested JSON arrays: the shape from the nesting, the datatype from the spec.
    private func tensor(_ spec: TensorSpec, nested value: Any) throws -> Tensor {
        var shape: [Int] = []
        var probe: Any = value
        while let array = probe as? [Any] {
            shape.append(array.count)
            guard let first = array.first else { break }
            probe = first
        }
        var cells: [String] = []
        func flatten(_ value: Any, depth: Int) throws {
            if let array = value as? [Any] {
                guard depth < shape.count, array.count == shape[depth] else {
                    throw TernError.invalidArgument("input '\(spec.name)': nested arrays are ragged")
                }
                for element in array { try flatten(element, depth: depth + 1) }
            } else {
                guard depth == shape.count else { throw TernError.invalidArgument("input '\(spec.name)': nested arrays are ragged") }
                cells.append("\(value)")
            }
        }
        try flatten(value, depth: 0)
        // A single row given for a model that takes [batch, features]: add the batch dimension.
        if shape.count + 1 == spec.shape.count { shape.insert(1, at: 0) }
        return try CellParser.tensor(name: spec.name, datatype: spec.datatype, shape: shape, cells: cells)
    }

    private func parseCSV(_ text: String) throws -> InferenceRequest {
        var rows = text.split(whereSeparator: \.isNewline).map { line in
            line.split(separator: ",", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
        }.filter { !$0.allSatisfy(\.isEmpty) }
        guard !rows.isEmpty else { throw TernError.invalidArgument("the CSV input has no rows") }
        let names = Set(signature.inputs.map(\.name))
        var header: [String]?
        // A header row holds names only; a row mixing names and numbers is data (and its bad cell an error).
        if rows[0].allSatisfy({ Double($0) == nil }) && (rows.count > 1 || rows[0].allSatisfy(names.contains)) {
            header = rows.removeFirst()
        }
        let width = rows[0].count
        for (index, row) in rows.enumerated() where row.count != width {
            throw TernError.invalidArgument("CSV row \(index + 1) has \(row.count) columns, the first row has \(width)")
        }
        if let header, Set(header) == names, signature.inputs.count > 1 {
            // One column per input, each [rows, 1].
            let tensors = try signature.inputs.map { spec in
                let column = header.firstIndex(of: spec.name)!
                return try CellParser.tensor(
                    name: spec.name, datatype: spec.datatype, shape: [rows.count, 1], cells: rows.map { $0[column] })
            }
            return InferenceRequest(inputs: tensors)
        }
        guard signature.inputs.count == 1 else {
            throw TernError.invalidArgument("the model has several inputs (" + signature.inputs.map(\.name).joined(separator: ", ")
                + "); give a CSV header row naming them")
        }
        let spec = signature.inputs[0]
        return InferenceRequest(inputs: [
            try CellParser.tensor(name: spec.name, datatype: spec.datatype, shape: [rows.count, width], cells: rows.flatMap { $0 }),
        ])
    }
}

/// Parses text cells into a tensor of a given datatype.
enum CellParser {
    static func tensor(name: String, datatype: DataType, shape: [Int], cells: [String]) throws -> Tensor {
        func parse<T: TensorElement>(_ convert: (String) -> T?) throws -> Tensor {
            var values: [T] = []
            values.reserveCapacity(cells.count)
            for (index, cell) in cells.enumerated() {
                guard let value = convert(cell) else {
                    throw TernError.invalidArgument("input '\(name)': value \(index) ('\(cell)') is not a valid \(datatype)")
                }
                values.append(value)
            }
            return try Tensor(name: name, shape: shape, values: values)
        }
        switch datatype {
        case .bool: return try parse { ["true": true, "1": true, "false": false, "0": false][$0.lowercased()] }
        case .uint8: return try parse { UInt8($0) }
        case .uint16: return try parse { UInt16($0) }
        case .uint32: return try parse { UInt32($0) }
        case .uint64: return try parse { UInt64($0) }
        case .int8: return try parse { Int8($0) }
        case .int16: return try parse { Int16($0) }
        case .int32: return try parse { Int32($0) }
        case .int64: return try parse { Int64($0) ?? Double($0).flatMap { $0 == $0.rounded() ? Int64(exactly: $0) : nil } }
        case .fp16: return try parse { Float($0).map(Float16.init) }
        case .fp32: return try parse { Float($0) }
        case .fp64: return try parse { Double($0) }
        case .bytes: return try Tensor(name: name, shape: shape, strings: cells)
        }
    }
}
