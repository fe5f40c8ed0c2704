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
              the server's      {"instances": ...}, {"dataframe_split": ...}, {"dataframe_records": ...}
              CSV               one row per line; a header row of names maps columns to the model's
                                inputs or feature names, otherwise the columns are taken in order
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
            let served = ServedModel(
                name: URL(fileURLWithPath: model).deletingPathExtension().lastPathComponent, version: 1,
                model: loaded, config: ModelConfig(), platform: "onnxruntime_onnx")
            let text = try readInput()
            var request: InferenceRequest
            switch try resolvedFormat(text) {
            case .json:
                request = try TabularInput.request(json: text, signature: loaded.signature, featureNames: served.featureNames)
            case .csv:
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

    enum Format: String { case json, csv }

    private func resolvedFormat(_ text: String) throws -> Format {
        if let format {
            guard let parsed = Format(rawValue: format) else {
                throw ValidationError("--format must be json or csv")
            }
            return parsed
        }
        if input.lowercased().hasSuffix(".csv") { return .csv }
        let first = text.first { !$0.isWhitespace }
        return first == "{" || first == "[" ? .json : .csv
    }
}
