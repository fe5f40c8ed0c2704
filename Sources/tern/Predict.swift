import ArgumentParser
import Foundation
import TernCodecs
import TernCore
import TernONNX

struct Predict: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Run a model in-process on JSON or CSV input and print the outputs (V2 JSON).",
        discussion: """
            --input takes a file path or the text itself, in one of these forms:
              V2 request JSON  {"inputs": [{"name": "features", "datatype": "FP32",
                                "shape": [1, 10], "data": [...]}]}
              input-name JSON  {"features": [[41, 52000, 0.3, 4, 0, 0, 12000, 6, 8, 0.4]]}
              rows JSON        [[41, 52000, ...], [35, 61000, ...]]  (one-input models)
              the server's     {"instances": ...}, {"dataframe_split": ...},
                               {"dataframe_records": ...}
              CSV              one row per line; a header row of names maps columns to
                               the model's inputs or feature names, else they go in order

            Datatypes come from the model; shapes from the data. Columns named by --ignore-columns (such as a label) are dropped; with a header, columns the model does not use are dropped with a warning. Text that starts with '-' must be passed as --input=TEXT.

            Example:
              tern predict examples/models/credit-risk/2/model.onnx \\
                --input '[[41, 52000, 0.3, 4, 0, 0, 12000, 6, 8, 0.4]]'
            """)

    @Argument(help: ArgumentHelp("The ONNX model file.", valueName: "model.onnx"))
    var model: String

    @Option(help: ArgumentHelp("Input: a file path, or JSON/CSV text.", valueName: "json|csv"))
    var input: String

    @Option(help: ArgumentHelp("json or csv (default: from the file name or the text).", valueName: "format"))
    var inputFormat: String?

    /// The old spelling of --input-format (--format names an output's format everywhere else).
    @Option(name: .customLong("format"), help: .hidden)
    var oldFormat: String?

    var format: String? { inputFormat ?? oldFormat }

    @Option(
        name: .customLong("outputs"), parsing: .upToNextOption,
        help: ArgumentHelp("The model outputs to print (default: all).", valueName: "name"))
    var outputs: [String] = []

    @Option(help: ArgumentHelp("CSV columns to drop before predicting, comma-separated (such as the label).", valueName: "names"))
    var ignoreColumns: String?

    @OptionGroup var runtimeOptions: RuntimeOptions

    func run() async throws {
        if oldFormat != nil {
            FileHandle.standardError.write(
                Data("tern predict: --format is now --input-format (--format will stop working in the next release)\n".utf8))
        }
        let runtime = runtimeOptions.openRuntime()
        let pool = RunnerPool(threads: 1, name: "tern.predict")
        defer { pool.shutdown() }
        do {
            let loaded = try ONNXModel(path: model, runtime: runtime, pool: pool, options: try runtimeOptions.sessionOptions())
            let (name, version) = Self.identity(of: model)
            let served = ServedModel(name: name, version: version, model: loaded, config: ModelConfig(), platform: "onnxruntime_onnx")
            var text = try readInput()
            var request: InferenceRequest
            switch try resolvedFormat(text) {
            case .json:
                request = try TabularInput.request(json: text, signature: loaded.signature, featureNames: served.featureNames)
            case .csv:
                let known = Set(loaded.signature.inputs.map(\.name) + (served.featureNames ?? []))
                text = try CSVColumns.dropping(
                    text, ignored: Set((ignoreColumns ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }),
                    keepingOnly: known)
                request = try TabularInput.request(csv: text, signature: loaded.signature, featureNames: served.featureNames)
            }
            request.outputs = outputs
            let service = InferenceService()
            service.catalog.add(served)
            service.isReady = true
            let response = try await service.infer(served, request: request)
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

    /// A model file's name and version as a model repository names them: `credit-risk/2/model.onnx` is
    /// credit-risk version 2; any other file is its own name, version 1.
    static func identity(of path: String) -> (String, Int) {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent()
        if let version = Int(folder.lastPathComponent), version >= 1 {
            return (folder.deletingLastPathComponent().lastPathComponent, version)
        }
        return (url.deletingPathExtension().lastPathComponent, 1)
    }

    enum Format: String { case json, csv }

    private func resolvedFormat(_ text: String) throws -> Format {
        if let format {
            guard let parsed = Format(rawValue: format) else {
                throw ValidationError("--input-format must be json or csv")
            }
            return parsed
        }
        if input.lowercased().hasSuffix(".csv") { return .csv }
        let first = text.first { !$0.isWhitespace }
        return first == "{" || first == "[" ? .json : .csv
    }
}

/// Dropping columns from CSV text with a header: those named, and (with a warning) those the model does
/// not use, so a file with a label or an id column can be scored as it is.
enum CSVColumns {
    static func dropping(_ text: String, ignored: Set<String>, keepingOnly known: Set<String>) throws -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasSuffix("\r") ? $0.dropLast() : $0 }
        guard let headerLine = lines.first else { return text }
        let header = fields(headerLine)
        // A header names columns; a first row of numbers is data, and then nothing is dropped by name.
        guard header.contains(where: { Double($0) == nil && !$0.isEmpty }) else {
            if !ignored.isEmpty { throw TernError.invalidArgument("--ignore-columns needs a header row naming the columns") }
            return text
        }
        if let missing = ignored.subtracting(header).sorted().first {
            throw TernError.invalidArgument(
                "--ignore-columns names '\(missing)', which the header does not have; columns: "
                    + header.joined(separator: ", "))
        }
        let unused = Set(header).subtracting(ignored).subtracting(known)
        // Only when the header otherwise names the model's columns: a header of other names is the codec's to judge.
        let drop = ignored.union(Set(header).subtracting(unused).isEmpty ? [] : unused)
        guard !drop.isEmpty else { return text }
        let dropped = unused.intersection(drop).sorted()
        if !dropped.isEmpty {
            FileHandle.standardError.write(Data("warning: ignoring columns the model does not use: \(dropped.joined(separator: ", "))\n".utf8))
        }
        let keep = header.indices.filter { !drop.contains(header[$0]) }
        for index in lines.indices where !lines[index].isEmpty {
            let row = fields(lines[index])
            lines[index] = Substring(keep.map { $0 < row.count ? quoted(row[$0]) : "" }.joined(separator: ","))
        }
        return lines.joined(separator: "\n")
    }

    /// One CSV line's fields (RFC 4180 quoting).
    static func fields(_ line: Substring) -> [String] {
        var result: [String] = []
        var field = ""
        var inQuotes = false
        var iterator = line.makeIterator()
        var pending: Character? = nil
        while let character = pending ?? iterator.next() {
            pending = nil
            if inQuotes {
                if character == "\"" {
                    if let next = iterator.next() {
                        if next == "\"" {
                            field.append("\"")
                        } else {
                            inQuotes = false
                            pending = next
                        }
                    } else {
                        inQuotes = false
                    }
                } else {
                    field.append(character)
                }
            } else if character == "\"" {
                inQuotes = true
            } else if character == "," {
                result.append(field.trimmingCharacters(in: .whitespaces))
                field = ""
            } else {
                field.append(character)
            }
        }
        result.append(field.trimmingCharacters(in: .whitespaces))
        return result
    }

    private static func quoted(_ field: String) -> String {
        field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
            ? "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : field
    }
}
