import ArgumentParser
import Foundation
import TernBundle
import TernCodecs
import TernCore
import TernExplain
import TernONNX

struct Explain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Explain a model's predictions: each feature's contribution (exact TreeSHAP and linear, KernelSHAP for any model).",
        discussion: """
            MODEL is an ONNX file or a bundle (.tern). Rows come from --input, a CSV file with a header naming the model's features (other columns, such as a label, are left out) or without one (columns in the model's order).

            Attributions are in the model's margin space: log-odds for a binary classifier (probability = 1 / (1 + e^-margin)), the raw score per class for a multiclass one (softmax), the value for a regressor or a random forest. For each row, base value + the sum of the attributions = the row's margin.

            Methods: interventional TreeSHAP (trees; the default) and linear (linear models) against a background sample: --background, else the bundle's reference sample (its first --background-rows rows). path_dependent TreeSHAP uses the trees' covers: the ONNX file's hit counts, else counted on the background.

            kernel (KernelSHAP) explains any model with one [rows, features] input from its own answers (ONNX Runtime runs it), in the space of its floating-point outputs (probabilities, values): the default for a model that is neither trees nor linear. With 2^features - 2 <= --samples every coalition is valued and the values are exact; otherwise they are estimates, each with a standard error. It uses --kernel-background-rows background rows (each coalition costs that many model rows).

            A pipeline with one input per column (skl2onnx's DataFrame recipe: strings and numbers) gets one attribution per source column, the sum over the features derived from it: exactly when its preprocessing (one-hot encoding, scaling, imputing ...) feeds trees or a linear model, explained against the background transformed by the model's own preprocessing; else by KernelSHAP over the columns (an absent column takes the background row's value). The headers of --input and --background name the columns.

            Example:
              tern explain credit.tern --input applicants.csv
              tern explain model.onnx --input rows.csv --background train.csv --json
            """)

    @Argument(help: ArgumentHelp("The ONNX model file or bundle.", valueName: "model.onnx|bundle.tern"))
    var model: String

    @Option(help: ArgumentHelp("The rows to explain: a CSV file.", valueName: "csv"))
    var input: String

    @Option(
        help: ArgumentHelp(
            "Background rows (a CSV file), for interventional and linear attributions; default: the bundle's reference sample.", valueName: "csv"))
    var background: String?

    @Option(help: ArgumentHelp("How many background rows to use (the first ones).", valueName: "rows"))
    var backgroundRows = 200

    @Option(
        help: ArgumentHelp(
            "interventional, path_dependent, linear or kernel (default: interventional for trees, linear for linear models, kernel for any other).",
            valueName: "method"))
    var method: String?

    @Option(help: ArgumentHelp("KernelSHAP: coalitions valued per row.", valueName: "n"))
    var samples = 2048

    @Option(help: ArgumentHelp("KernelSHAP: the seed of the coalition draws.", valueName: "n"))
    var seed: UInt64 = 0

    @Option(help: ArgumentHelp("KernelSHAP: background rows used (the first ones).", valueName: "rows"))
    var kernelBackgroundRows = 50

    @OptionGroup var runtimeOptions: RuntimeOptions

    @Option(help: ArgumentHelp("Features to show per row in the table.", valueName: "n"))
    var top = 5

    @Flag(help: "Print every attribution as JSON instead of a table.")
    var json = false

    func validate() throws {
        if let method, Attributions.Method(rawValue: method) == nil {
            throw ValidationError("--method must be interventional, path_dependent, linear or kernel")
        }
        guard (16...1_000_000).contains(samples) else { throw ValidationError("--samples must be 16...1000000") }
        guard (1...100_000).contains(kernelBackgroundRows) else { throw ValidationError("--kernel-background-rows must be 1...100000") }
        guard (1...100_000).contains(backgroundRows) else { throw ValidationError("--background-rows must be 1...100000") }
        guard top >= 1 else { throw ValidationError("--top must be at least 1") }
    }

    func run() async throws {
        do {
            let (onnx, known, reference) = try loadModel()
            let chosen = method.flatMap(Attributions.Method.init(rawValue:))
            var structure: ModelStructure?
            do {
                structure = try ModelStructure.read(onnx: onnx)
            } catch {
                // Neither trees nor linear: KernelSHAP, unless an exact method was asked for.
                if let chosen, chosen != .kernel { throw error }
            }
            let pool = RunnerPool(threads: 1, name: "tern.explain")
            defer { pool.shutdown() }
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("tern-explain-\(UUID().uuidString).onnx").path
            defer { try? FileManager.default.removeItem(atPath: file) }
            try onnx.write(to: URL(fileURLWithPath: file))
            let loaded = try ONNXModel(path: file, runtime: runtimeOptions.openRuntime(), pool: pool, options: try runtimeOptions.sessionOptions())
            // A model of source columns (one input per column, strings, or preprocessing before the trees):
            // one attribution per column.
            if structure == nil, let columns = try? SourceColumns(inputs: loaded.signature.inputs, featureNames: known),
                try await explainColumns(loaded, data: onnx, columns: columns, reference: reference, method: chosen)
            {
                return
            }
            let kernelModel = structure == nil || chosen == .kernel ? loaded : nil
            let spec = kernelModel?.signature.inputs.first
            let width = structure?.featureCount ?? (spec.map { $0.shape.count == 2 && $0.shape[1] > 0 ? $0.shape[1] : 0 } ?? 0)
            let table = try readTable(input, what: "--input")
            // A model that names no features takes the names of the input's header.
            let names = known ?? (table.columns.count == width && !table.columns.contains { $0.hasPrefix("column_") } ? table.columns : nil)
            let rows = try FeatureRows.rows(columns: table.columns, values: table.rows, featureNames: names, width: width, what: "--input")
            var backgroundRows: [[Double]] = []
            if let background {
                let table = try readTable(background, what: "--background")
                backgroundRows = try FeatureRows.rows(
                    columns: table.columns, values: table.rows, featureNames: names, width: width, what: "--background")
            } else if let reference {
                backgroundRows = try FeatureRows.rows(
                    columns: reference.columns, values: reference.rows, featureNames: names, width: width, what: "the bundle's reference sample")
            }
            backgroundRows = Array(backgroundRows.prefix(self.backgroundRows))
            let attributions: Attributions
            let outputs: [String]
            if let kernelModel {
                guard let probe = backgroundRows.first else {
                    throw TernError.invalidArgument("KernelSHAP needs a background sample: give --background CSV (or a bundle with reference data)")
                }
                let target = try await KernelTarget(model: kernelModel, probe: probe)
                let kernel = KernelSHAP(samples: samples, seed: seed)
                attributions = try await kernel.explain(
                    rows, background: Array(backgroundRows.prefix(kernelBackgroundRows)), outputs: target.columns, predict: target.predict)
                outputs = target.outputNames
            } else if let structure {
                attributions = try Explainer.explain(structure, rows: rows, background: backgroundRows, method: chosen)
                outputs = ExplanationJSON.outputNames(structure)
            } else {
                throw TernError.internalError("no explainer")
            }
            try show(attributions, names: names ?? (0..<width).map { "feature_\($0)" }, outputs: outputs)
        } catch let error as ValidationError {
            throw error
        } catch {
            fail(error)
        }
    }

    /// Explains a model of source columns, when its graph is read through them: exactly through its
    /// preprocessing, else by KernelSHAP over the columns. False for one numeric matrix no preprocessing
    /// reads (the matrix path explains it).
    private func explainColumns(
        _ model: ONNXModel, data: Data, columns: SourceColumns, reference: ReferenceProfile.Sample?, method: Attributions.Method?
    ) async throws -> Bool {
        let table = try readTable(input, what: "--input")
        let rows = try columns.rows(columns: table.columns, values: table.rows, what: "--input")
        var background: [[Cell]] = []
        if let path = self.background {
            let table = try readTable(path, what: "--background")
            background = try columns.rows(columns: table.columns, values: table.rows, what: "--background")
        } else if let reference {
            background = try columns.rows(columns: reference.columns, values: reference.rows, what: "the bundle's reference sample")
        }
        let explainer = try await ColumnExplainer.prepare(
            model: model, onnx: model, data: data, columns: columns, background: Array(background.prefix(backgroundRows)))
        guard explainer.preprocessing != nil || !columns.isOneMatrix else { return false }
        let (attributions, _) = try await explainer.explain(
            rows, method: method, kernel: KernelSHAP(samples: samples, seed: seed), backgroundRows: kernelBackgroundRows,
            what: self.model,
            noBackground: "explaining \(self.model) needs background rows: give --background CSV (a sample of the training data, "
                + "a header naming the model's columns), or a bundle packed with --reference")
        let outputs = attributions.method == .kernel ? (try? explainer.kernel?.get().outputNames) ?? [] : explainer.outputs
        try show(attributions, names: columns.names, outputs: outputs)
        return true
    }

    private func show(_ attributions: Attributions, names: [String], outputs: [String]) throws {
        if json {
            let object = ExplanationJSON.object(attributions, featureNames: names, outputNames: outputs)
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        } else {
            printTable(attributions, names: names, outputs: outputs)
        }
    }

    /// The ONNX bytes, feature names and reference sample of a model file or bundle.
    private func loadModel() throws -> (Data, [String]?, ReferenceProfile.Sample?) {
        guard FileManager.default.fileExists(atPath: model) else { throw TernError.notFound("no such file: \(model)") }
        if model.hasSuffix(".onnx") {
            let data = try Data(contentsOf: URL(fileURLWithPath: model))
            return (data, ModelStructure.featureNames(onnx: data), nil)
        }
        let bundle = try ModelBundle(archiveFile: model)
        let profile = try bundle.decoded(ReferenceProfile.self, file: BundleFile.profile)
        return (bundle.model, bundle.manifest.featureNames, profile?.sample)
    }

    private func readTable(_ path: String, what: String) throws -> CSVTable {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw TernError.invalidArgument("\(what): cannot read '\(path)' as UTF-8 text")
        }
        var table = try CSVTable(text: text, source: path)
        // A first line of numbers is data, not a header.
        if table.columns.allSatisfy({ Double($0) != nil }) {
            table = CSVTable(columns: table.columns.indices.map { "column_\($0)" }, rows: [table.columns] + table.rows)
        }
        return table
    }

    private func printTable(_ attributions: Attributions, names: [String], outputs: [String]) {
        print(
            "method \(attributions.method.rawValue), margins in \(attributions.link == .identity ? "the model's output" : attributions.link == .logistic ? "log-odds" : "raw class scores")"
        )
        for o in 0..<attributions.outputs {
            print("base value (\(outputs[o])): \(String(format: "%.6g", attributions.base[o]))")
        }
        for r in attributions.values.indices {
            let scores = ExplanationJSON.score(attributions.margins[r], link: attributions.link)
            for o in 0..<attributions.outputs {
                print(
                    "row \(r + 1)  \(outputs[o])  margin \(String(format: "%.6g", attributions.margins[r][o]))  score \(String(format: "%.4g", scores[min(o, scores.count - 1)]))"
                )
                let ranked = (0..<attributions.featureCount).sorted {
                    abs(attributions.value(row: r, feature: $0, output: o)) > abs(attributions.value(row: r, feature: $1, output: o))
                }
                for f in ranked.prefix(top) {
                    let value = attributions.value(row: r, feature: f, output: o)
                    let error = attributions.errors.map { "  ± " + String(format: "%.2g", $0[r][f * attributions.outputs + o]) } ?? ""
                    print(
                        "    \(names[f].padding(toLength: max(20, names[f].count), withPad: " ", startingAt: 0)) \(value >= 0 ? "+" : "")\(String(format: "%.6g", value))\(error)"
                    )
                }
            }
        }
    }
}
