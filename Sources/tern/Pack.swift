import ArgumentParser
import Foundation
import Synchronization
import TernBundle
import TernCodecs
import TernCore
import TernModelFiles
import TernONNX
import TernRollouts
import TernServer

struct Pack: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Package an ONNX model as a versioned bundle: model, manifest, reference profile, metrics, model card.",
        discussion: """
            With --reference, the training data's distribution (and the model's outputs on it) is profiled for drift detection. With --holdout, the model is run on labelled rows and scored (classification: accuracy, precision, recall, F1, ROC AUC, log loss, confusion matrix; regression: MAE, RMSE, R2), and kept in the bundle (holdout.csv) for the validation gate (tern models gate) unless --no-keep-holdout. CSV files need a header row naming the columns.

            A scikit-learn, XGBoost or LightGBM pickle (.joblib, .pkl) is converted to ONNX first, with skl2onnx's DataFrame recipe over the columns of --sample (one input per column: strings for text columns), in a Python environment Tern sets up in the data folder on first use (or --python), and checked against the pickle on the sample rows (refused above --tolerance).

            Example:
              tern pack model.onnx --name credit-risk --version 3 \\
                --reference train.csv --holdout test.csv --label-column default \\
                --class-labels repaid,defaulted --owner risk-team --tag tabular
              tern pack pipeline.joblib --sample test.csv --name credit-risk \\
                --reference train.csv --holdout test.csv --label-column bad
            """)

    @Argument(
        help: ArgumentHelp(
            "The ONNX model file, or a scikit-learn, XGBoost or LightGBM pickle (.joblib, .pkl) to convert (with --sample).",
            valueName: "model.onnx|model.joblib"))
    var model: String

    @Option(
        help: ArgumentHelp(
            "A pickle's sample rows (CSV with a header; default: --reference): their columns make the ONNX inputs, and the converted model is checked against the pickle on them.",
            valueName: "csv"))
    var sample: String?

    @Option(help: ArgumentHelp("The largest difference allowed between the pickle's and the ONNX model's outputs on the sample.", valueName: "x"))
    var tolerance = 1e-4

    @Option(
        help: ArgumentHelp(
            "A Python interpreter with skl2onnx, onnxmltools and the pickle's libraries to convert with (default: a venv Tern sets up in the data folder).",
            valueName: "path"))
    var python: String?

    @Option(help: "The model's name in the registry.")
    var name: String

    @Option(help: "The version number (default: the registry assigns the next one at push).")
    var version: Int?

    @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the bundle (default: NAME[-VERSION].tern).", valueName: "file"))
    var output: String?

    @Option(help: ArgumentHelp("Training or reference data (CSV with a header) to profile.", valueName: "csv"))
    var reference: String?

    @Option(help: ArgumentHelp("Rows of the reference data kept in the bundle (a seeded sample) for drift tests.", valueName: "rows"))
    var referenceSample: Int = ReferenceProfile.defaultSampleLimit

    @Option(help: ArgumentHelp("Labelled holdout data (CSV with a header) to compute validation metrics on.", valueName: "csv"))
    var holdout: String?

    @Flag(inversion: .prefixedNo, help: "Keep the holdout rows in the bundle (holdout.csv), for the validation gate to score versions on.")
    var keepHoldout = true

    @Option(help: "The holdout's (and, if present, the reference data's) label column.")
    var labelColumn: String = "label"

    @Option(
        help: ArgumentHelp(
            "Column names of a [rows, features] input, comma-separated (default: the model's feature_names metadata).", valueName: "a,b,c"))
    var featureNames: String?

    @Option(
        help: ArgumentHelp(
            "The label values (as the data and the model write them) in the order of the model's probability columns, comma-separated (default: the labels seen, sorted).",
            valueName: "a,b"))
    var classLabels: String?

    @Option(help: ArgumentHelp("classification or regression (default: from the model's outputs).", valueName: "task"))
    var task: String?

    @Option(help: "A one-line description.")
    var description: String?

    @Option(help: "Who owns the model (team or person).")
    var owner: String?

    @Option(name: .customLong("tag"), help: "A tag; repeat for several.")
    var tags: [String] = []

    @Option(help: ArgumentHelp("A config.yaml to serve the model with (batching, instances).", valueName: "file"))
    var config: String?

    @Option(
        help: ArgumentHelp(
            "Sign the bundle with this Ed25519 private key (PEM, from tern keys create-signing or openssl genpkey -algorithm ed25519).",
            valueName: "key"))
    var sign: String?

    @Option(help: "The signer's name recorded with the signature (default: the key file's name).")
    var signer: String?

    @OptionGroup var runtimeOptions: RuntimeOptions

    func validate() throws {
        guard (1...1_000_000).contains(referenceSample) else { throw ValidationError("--reference-sample must be 1...1000000 rows") }
        if let task, task != "classification", task != "regression" {
            throw ValidationError("--task must be classification or regression")
        }
        if let version, !(1...ModelVersionNumber.maximum).contains(version) {
            throw ValidationError("--version must be between 1 and \(ModelVersionNumber.maximum)")
        }
    }

    func run() async throws {
        // A long pack (a million reference rows) says what it is doing every few seconds, on a terminal or in a log.
        let status = PackStatus()
        let reporter = Task {
            let start = ContinuousClock.now
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                if Task.isCancelled { break }
                let seconds = (ContinuousClock.now - start).components.seconds
                FileHandle.standardError.write(Data("pack: \(status.line) (\(seconds) s)\n".utf8))
            }
        }
        defer { reporter.cancel() }
        let runtime = runtimeOptions.openRuntime()
        let pool = RunnerPool(threads: 1, name: "tern.pack")
        defer { pool.shutdown() }
        do {
            try BundleManifest.checkName(name)
            var model = self.model
            let converted = FileManager.default.temporaryDirectory.appendingPathComponent("tern-pack-\(UUID().uuidString).onnx").path
            defer { try? FileManager.default.removeItem(atPath: converted) }
            if PickleConverter.isPickle(model) {
                status.begin("converting \(model)", "converting \(model) to ONNX")
                try convert(pickle: model, to: converted)
                model = converted
            }
            let onnx = try ONNXModel(path: model, runtime: runtime, pool: pool, options: try runtimeOptions.sessionOptions())
            var files: [String: Data] = [BundleFile.model: try read(model)]
            var serveConfig = ModelConfig()
            if let config {
                files[BundleFile.config] = try read(config)
                serveConfig = try ModelRepository.parseConfig(yaml: String(decoding: files[BundleFile.config]!, as: UTF8.self), source: config)
            }
            if let names = featureNames.map(Self.list) { serveConfig.featureNames = names }
            let served = ServedModel(name: name, version: 1, model: onnx, config: serveConfig, platform: "onnxruntime_onnx")
            let names = served.featureNames
            var classes = classLabels.map(Self.list)
            var runner = TableRunner(served: served)
            runner.progress = { done, total in status.set("\(status.phase): \(done) of \(total) rows scored") }

            var profile: ReferenceProfile?
            if let reference {
                status.begin("profiling \(reference)", "reading \(reference)")
                let table = try CSVTable(text: String(decoding: try read(reference), as: UTF8.self), source: reference)
                status.set("profiling \(reference): scoring \(table.rows.count) rows")
                let features = table.dropping([labelColumn])
                let outputs = try await runner.run(features, source: reference)
                status.set("profiling \(reference): the columns' distributions")
                profile = ReferenceProfile(
                    table: features, predictions: outputs.profiles(classLabels: classes), outputs: outputs.table(),
                    sampleLimit: referenceSample)
                if table.index(of: labelColumn) != nil { profile?.labelColumn = labelColumn }
            }
            var metrics: ValidationMetrics?
            var inferredTask = task
            if let holdout {
                status.begin("scoring the holdout \(holdout)", "reading \(holdout)")
                let table = try CSVTable(text: String(decoding: try read(holdout), as: UTF8.self), source: holdout)
                guard let labelIndex = table.index(of: labelColumn) else {
                    throw TernError.invalidArgument(
                        "\(holdout) has no column '\(labelColumn)'; name the label column with --label-column (columns: \(table.columns.joined(separator: ", ")))"
                    )
                }
                let truth = table.column(labelIndex)
                if keepHoldout {
                    let bytes = try read(holdout)
                    if bytes.count <= BundleLimits().profileBytes {
                        files[BundleFile.holdout] = bytes
                    } else {
                        FileHandle.standardError.write(
                            Data(
                                "\(holdout) is over \(BundleLimits().profileBytes >> 20) MiB: not kept in the bundle (the validation gate then needs its data configured)\n"
                                    .utf8))
                    }
                }
                let outputs = try await runner.run(table.dropping([labelColumn]), source: holdout)
                inferredTask = task ?? outputs.inferredTask
                (metrics, classes) = try HoldoutScoring.score(
                    task: inferredTask, truth: truth, outputs: outputs, classes: classes, labelColumn: labelColumn, source: holdout)
            } else if inferredTask == nil, onnx.signature.outputs.contains(where: { [.int64, .int32, .bytes].contains($0.datatype) }) {
                inferredTask = "classification"
            }
            var manifest = BundleManifest(
                name: name, version: version, producer: "tern \(TernVersion.version)", description: description,
                owner: owner, tags: tags, task: inferredTask, featureNames: names, classLabels: classes,
                signature: onnx.signature)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            if let profile { files[BundleFile.profile] = try encoder.encode(profile) }
            if let metrics { files[BundleFile.metrics] = try encoder.encode(metrics) }
            // The card names the model's digest, so build the manifest's file list before writing it.
            manifest = ModelBundle(manifest: manifest, files: files).manifest
            files[BundleFile.card] = Data(ModelCard.markdown(manifest: manifest, profile: profile, metrics: metrics).utf8)
            var bundle = ModelBundle(manifest: manifest, files: files)
            if let sign {
                let key = try SigningKeys.privateKey(file: sign)
                try bundle.sign(with: key, signer: signer ?? URL(fileURLWithPath: sign).deletingPathExtension().lastPathComponent)
            }
            status.begin("writing the bundle", "compressing and checking the bundle")
            let archive = try bundle.archive()
            // What tern push checks of an archive (sizes, compression ratios) is checked before anything is written.
            do {
                _ = try ModelBundle(archive: archive)
            } catch {
                throw TernError.invalidArgument(
                    "this bundle would be refused by tern push, so it was not written: \(error.message)"
                        + (error.message.contains("inflates") ? " (a holdout of repeated rows compresses too well: give distinct rows)" : ""))
            }
            let path = output ?? (version.map { "\(name)-\($0).tern" } ?? "\(name).tern")
            try write(archive, to: path)
            print("wrote \(path) (\(archive.count) bytes, sha256 \(Digest.sha256(archive)))")
            if let signature = bundle.signature { print("signed by \(signature.signer) (ed25519 key \(signature.keyID))") }
            if let metrics { print(Self.summary(metrics)) }
        } catch let error as ValidationError {
            throw error
        } catch {
            fail(error)
        }
    }

    static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    static func summary(_ metrics: ValidationMetrics) -> String {
        let values: [(String, Double?)] = [
            ("accuracy", metrics.accuracy), ("f1", metrics.f1), ("roc_auc", metrics.rocAuc), ("log_loss", metrics.logLoss),
            ("mae", metrics.mae), ("rmse", metrics.rmse), ("r2", metrics.r2),
        ]
        return "holdout (\(metrics.rows) rows): "
            + values.compactMap { name, value in
                value.map { "\(name) \(String(format: "%.4f", $0))" }
            }.joined(separator: ", ")
    }
}

/// What `tern pack` is doing, for its progress lines.
final class PackStatus: Sendable {
    private let state = Mutex<(phase: String, line: String)>(("starting", "starting"))

    var phase: String { state.withLock { $0.phase } }
    var line: String { state.withLock { $0.line } }

    func begin(_ phase: String, _ line: String) { state.withLock { $0 = (phase, line) } }
    func set(_ line: String) { state.withLock { $0.line = line } }
}

extension Pack {
    /// Converts a pickle to ONNX at `output`, verified on the sample rows within --tolerance.
    func convert(pickle: String, to output: String) throws {
        guard FileManager.default.fileExists(atPath: pickle) else { throw TernError.notFound("no such file: \(pickle)") }
        guard let sample = sample ?? reference else {
            throw TernError.invalidArgument(
                "converting a pickle needs sample rows: --sample data.csv (a CSV with a header naming the columns the model was fitted on)")
        }
        FileHandle.standardError.write(Data("converting \(pickle) to ONNX (a pickle runs code when loaded: convert only pickles you trust)\n".utf8))
        let converter = PickleConverter(python: python, dataFolder: RegistryOptions.dataFolder(nil))
        let report = try converter.convert(pickle: pickle, sample: sample, labelColumn: labelColumn, output: output)
        let mismatches = report.labelMismatches.map { ", \($0) different labels" } ?? ""
        FileHandle.standardError.write(
            Data(
                ("converted \(report.model): \(report.shape), outputs \(report.outputs.joined(separator: ", ")); "
                    + "on \(report.rows) sample rows the largest difference from the pickle's \(report.compared) is "
                    + "\(String(format: "%.3g", report.maxAbsDiff)) (\(report.rowsDiffering) rows differ by more than 1e-6\(mismatches); tolerance \(tolerance))\n")
                    .utf8))
        guard report.maxAbsDiff <= tolerance else {
            throw TernError.invalidArgument(
                "the converted model differs from the pickle by up to \(String(format: "%.3g", report.maxAbsDiff)) on \(report.rowsDiffering) of \(report.rows) sample rows, "
                    + "more than --tolerance \(tolerance): rows on a tree's split threshold can go the other way when the ONNX "
                    + "preprocessing computes in float32 (see docs/pickles.md); pass --tolerance \(String(format: "%.2g", report.maxAbsDiff * 1.01)) to accept it"
            )
        }
    }
}

func read(_ path: String) throws(TernError) -> Data {
    guard let data = FileManager.default.contents(atPath: path) else { throw .notFound("cannot read '\(path)'") }
    return data
}

/// Writes a file whole or not at all (a temporary file renamed into place).
func write(_ data: Data, to path: String) throws(TernError) {
    do {
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
    } catch {
        throw .invalidArgument("cannot write '\(path)': \(error.localizedDescription)")
    }
}
