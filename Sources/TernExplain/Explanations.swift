import Foundation
import NIOCore
import Synchronization
import TernBundle
import TernCodecs
import TernCore
import TernONNX
import TernRegistry

/// Explanations of served versions: each version's structure read once from its ONNX file, its
/// background from its bundle's reference sample (with a registry), computed off the event loops. Trees and
/// linear models are explained exactly; any other model with one `[rows, features]` input by KernelSHAP.
public final class Explanations: Sendable, ResponseExplainer {
    /// What an explanation of one version needs, prepared once.
    package struct Prepared: Sendable {
        /// The exact explainer; nil when the model is neither trees nor linear (`unsupported` says why).
        package var exact: Explainer?
        package var unsupported: String?
        package var featureNames: [String]?
        package var outputs: [String]
        package var background: [[Double]]
        package var width: Int
        /// KernelSHAP's view of the model, or why it cannot run it.
        package var kernel: Result<KernelTarget, TernError>?
        /// A model read through its source columns (several inputs, strings, or preprocessing before the
        /// ensemble); nil for one numeric matrix fed straight to the explained node.
        package var columns: ColumnExplainer?
    }

    package let service: InferenceService
    /// The registry whose bundles hold each version's reference sample; nil: a model folder.
    package let registry: Registry?
    package let limits: ExplanationLimits
    private let prepared = Mutex<[String: Prepared]>([:])
    /// The background of a model folder's version: a CSV file beside its model.onnx.
    package static let folderBackground = "reference.csv"
    /// Background rows used at most (the reference sample's first ones).
    package static let defaultBackgroundRows = 200
    /// Background rows KernelSHAP uses unless asked (each coalition costs one model row per background row).
    package static let kernelBackgroundRows = 50

    public init(service: InferenceService, registry: Registry?, limits: ExplanationLimits = ExplanationLimits()) {
        self.service = service
        self.registry = registry
        self.limits = limits
    }

    package func prepare(_ served: ServedModel) async throws -> Prepared {
        let key = "\(served.name)\u{0}\(served.version)"
        if let ready = prepared.withLock({ $0[key] }) { return ready }
        guard let onnx = served.model as? ONNXModel ?? (served.model as? DynamicBatcher)?.model as? ONNXModel else {
            throw TernError.invalidArgument("\(served.name) v\(served.version) is not an ONNX model Tern can read")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: onnx.path))
        } catch {
            throw TernError.internalError("cannot read \(served.name)'s model file: \(error)")
        }
        var structure: ModelStructure?, unsupported: String?
        do {
            structure = try ModelStructure.read(onnx: data)
        } catch {
            unsupported = error.message
        }
        let input = served.model.signature.inputs.first
        let width = structure?.featureCount ?? (input.map { $0.shape.count == 2 && $0.shape[1] > 0 ? $0.shape[1] : 0 } ?? 0)
        var names = served.featureNames ?? ModelStructure.featureNames(onnx: data)
        var background: [[Double]] = []
        let oneMatrix = (try? SourceColumns(inputs: served.model.signature.inputs, featureNames: names))?.isOneMatrix ?? true
        if oneMatrix, let registry,
            let profile = try? ModelBundle(archive: try await registry.archive(served.name, served.version))
                .decoded(ReferenceProfile.self, file: BundleFile.profile)
        {
            let sample = profile.sample
            background = try FeatureRows.rows(
                columns: sample.columns, values: Array(sample.rows.prefix(Self.defaultBackgroundRows)), featureNames: names,
                width: width > 0 ? width : names?.count ?? sample.columns.count,
                what: "\(served.name) v\(served.version)'s reference sample")
        }
        // A model folder's version may keep its background beside the model: reference.csv (a header naming the features).
        let beside = URL(fileURLWithPath: onnx.path).deletingLastPathComponent().appendingPathComponent(Self.folderBackground).path
        if oneMatrix, background.isEmpty, registry == nil, let text = try? String(contentsOfFile: beside, encoding: .utf8) {
            let table = try CSVTable(text: text, source: beside)
            // A model that names no features takes the names of the file's header.
            if names == nil, table.columns.count == width { names = table.columns }
            background = try FeatureRows.rows(
                columns: table.columns, values: Array(table.rows.prefix(Self.defaultBackgroundRows)), featureNames: names,
                width: width > 0 ? width : names?.count ?? table.columns.count, what: beside)
        }
        if structure == nil, let explainer = try await columnExplainer(served, onnx: onnx, data: data, names: names) {
            return prepareColumns(served, key: key, explainer: explainer, unsupported: unsupported)
        }
        // The walks grouped and covers counted on the background once here, not on every request.
        let exact = try structure.map { structure throws(TernError) in try Explainer(structure, background: background) }
        var kernel: Result<KernelTarget, TernError>?
        if let probe = background.first {
            do {
                kernel = .success(try await KernelTarget(model: served.model, probe: probe))
            } catch {
                kernel = .failure(error as? TernError ?? .internalError("\(error)"))
            }
        }
        let outputs = structure.map(ExplanationJSON.outputNames) ?? (try? kernel?.get().outputNames) ?? []
        let ready = Prepared(
            exact: exact, unsupported: unsupported, featureNames: names, outputs: outputs, background: background,
            width: width > 0 ? width : background.first?.count ?? 0, kernel: kernel)
        prepared.withLock { $0[key] = ready }
        return ready
    }

    /// The column explainer of a model no exact explainer reads directly: its background from the
    /// bundle's reference sample or the folder's reference.csv, and its preprocessing when the graph has
    /// one. Nil for one numeric matrix that no preprocessing reads (KernelSHAP on the matrix, as before).
    private func columnExplainer(_ served: ServedModel, onnx: ONNXModel, data: Data, names: [String]?) async throws -> ColumnExplainer? {
        guard let columns = try? SourceColumns(inputs: served.model.signature.inputs, featureNames: names) else { return nil }
        var background: [[Cell]] = []
        if let registry,
            let profile = try? ModelBundle(archive: try await registry.archive(served.name, served.version))
                .decoded(ReferenceProfile.self, file: BundleFile.profile)
        {
            background = try columns.rows(
                columns: profile.sample.columns, values: Array(profile.sample.rows.prefix(Self.defaultBackgroundRows)),
                what: "\(served.name) v\(served.version)'s reference sample")
        }
        let beside = URL(fileURLWithPath: onnx.path).deletingLastPathComponent().appendingPathComponent(Self.folderBackground).path
        if background.isEmpty, registry == nil, let text = try? String(contentsOfFile: beside, encoding: .utf8) {
            let table = try CSVTable(text: text, source: beside)
            background = try columns.rows(columns: table.columns, values: Array(table.rows.prefix(Self.defaultBackgroundRows)), what: beside)
        }
        let explainer = try await ColumnExplainer.prepare(model: served.model, onnx: onnx, data: data, columns: columns, background: background)
        guard explainer.preprocessing != nil || !columns.isOneMatrix else { return nil }
        return explainer
    }

    private func prepareColumns(_ served: ServedModel, key: String, explainer: ColumnExplainer, unsupported: String?) -> Prepared {
        let ready = Prepared(
            exact: explainer.exact, unsupported: explainer.exact == nil ? explainer.unsupported ?? unsupported : nil,
            featureNames: explainer.columns.names, outputs: explainer.outputs, background: [], width: explainer.columns.count,
            kernel: explainer.kernel, columns: explainer)
        prepared.withLock { $0[key] = ready }
        return ready
    }

    package static func encode(_ object: [String: Any]) throws -> ByteBuffer {
        ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
    }

    /// How a request asks to be explained: the explain route's parameters (`method`, `samples`, `seed`,
    /// `background_rows`), or the same with an `explain_` prefix on an infer request.
    package struct Options {
        var method: Attributions.Method?
        var kernel = KernelSHAP(samples: 2048)
        var backgroundRows: Int?

        init(_ parameters: [String: ParameterValue], prefix: String) throws(TernError) {
            if let value = parameters[prefix + "method"] {
                guard case .string(let text) = value, let chosen = Attributions.Method(rawValue: text) else {
                    throw .invalidArgument("parameter \(prefix)method must be interventional, path_dependent, linear or kernel")
                }
                method = chosen
            }
            if let samples = try Self.integer(parameters, prefix + "samples", 16...1_000_000) { kernel.samples = samples }
            if let seed = try Self.integer(parameters, prefix + "seed", 0...Int(Int64.max)) { kernel.seed = UInt64(seed) }
            backgroundRows = try Self.integer(parameters, prefix + "background_rows", 1...100_000)
        }

        private static func integer(_ parameters: [String: ParameterValue], _ name: String, _ range: ClosedRange<Int>) throws(TernError) -> Int? {
            guard let value = parameters[name] else { return nil }
            let number: Int? =
                switch value {
                case .int(let n): Int(exactly: n)
                case .double(let d): d.rounded() == d && abs(d) < 1e15 ? Int(d) : nil
                case .string(let text): Int(text)
                case .bool: nil
                }
            guard let number, range.contains(number) else {
                throw .invalidArgument("parameter \(name) must be an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return number
        }
    }

    /// Explains `rows` of a version, exactly where its structure allows, else (or when asked) by KernelSHAP.
    package func attributions(_ served: ServedModel, rows: [[Double]], options: Options) async throws -> (Attributions, Prepared, Int) {
        let ready = try await prepare(served)
        let noBackground =
            "\(served.name) v\(served.version) has no background data to explain against: "
            + (registry == nil
                ? "put a sample of the training data, a CSV file with a header, beside its model.onnx as \(Self.folderBackground)"
                : "push a bundle packed with --reference TRAINING.csv (its reference sample is the background)")
        if let exact = ready.exact, options.method != .kernel {
            if ready.background.isEmpty, options.method != .pathDependent || !exact.structure.hasCovers {
                throw TernError.invalidArgument(noBackground)
            }
            let work = Double(rows.count) * Double(options.method == .pathDependent ? 1 : max(1, ready.background.count))
            try limits.check(work: work, what: "\(rows.count) rows x \(ready.background.count) background rows")
            return (try exact.explain(rows, method: options.method), ready, ready.background.count)
        }
        if let method = options.method, method != .kernel {
            throw TernError.invalidArgument(
                "the \(method.rawValue) method needs a tree ensemble or a linear model; "
                    + "\(served.name) v\(served.version) is neither (\(ready.unsupported ?? "")): use method kernel")
        }
        guard let kernel = ready.kernel else {
            throw TernError.invalidArgument(
                noBackground + (ready.unsupported.map { "; no exact method applies (\($0)), so KernelSHAP needs it" } ?? ""))
        }
        let target = try kernel.get()
        let background = Array(ready.background.prefix(options.backgroundRows ?? Self.kernelBackgroundRows))
        let width = rows.first?.count ?? 0
        let coalitions = options.kernel.isExact(features: width) ? (1 << width) - 2 : max(4 * KernelSHAP.errorGroups, options.kernel.samples)
        try limits.check(
            work: Double(rows.count) * Double(coalitions) * Double(max(1, background.count)),
            what: "\(rows.count) rows x \(coalitions) coalitions x \(background.count) background rows")
        let attributions = try await options.kernel.explain(
            rows, background: background, outputs: target.columns, predict: bounded(target.predict))
        return (attributions, ready, background.count)
    }

    /// `predict`, stopped at the explanation's deadline and when the task is cancelled, between batches.
    private func bounded(_ predict: @escaping KernelSHAP.Predict) -> KernelSHAP.Predict {
        let deadline = ContinuousClock.now + limits.timeout
        let timeout = limits.timeout
        return { rows, count in
            try Task.checkCancellation()
            guard ContinuousClock.now < deadline else {
                throw TernError(
                    .timedOut,
                    "the explanation took longer than \(timeout) (--explain-timeout): explain fewer rows, "
                        + "or lower samples or background_rows")
            }
            return try await predict(rows, count)
        }
    }

    /// The explain routes' answer: the explanation's JSON, and the same explanation as tensors (what the
    /// prediction log records of it).
    package func explainRoute(_ served: ServedModel, _ request: InferenceRequest) async throws -> (answer: ByteBuffer, outputs: [Tensor]) {
        let ready = try await prepare(served)
        let options = try Options(request.parameters, prefix: "")
        let (attributions, rows, backgroundRows) = try await explain(served, inputs: request.inputs, ready: ready, options: options)
        let outputs = attributions.method == .kernel ? (try? ready.kernel?.get().outputNames) ?? ready.outputs : ready.outputs
        var object = ExplanationJSON.object(attributions, featureNames: ready.featureNames, outputNames: outputs)
        object["model_name"] = served.name
        object["model_version"] = String(served.version)
        object["background_rows"] = backgroundRows
        if let id = request.id { object["id"] = id }
        return (try Self.encode(object), try Self.tensors(attributions, rows: rows, ready: ready, outputs: outputs))
    }

    /// A request's inputs explained: through the columns for a column model, else as one feature matrix.
    private func explain(_ served: ServedModel, inputs: [Tensor], ready: Prepared, options: Options) async throws -> (Attributions, Int, Int) {
        if let explainer = ready.columns {
            let rows = try explainer.columns.rows(tensors: inputs)
            let (attributions, background) = try await explainer.explain(
                rows, method: options.method, kernel: options.kernel, backgroundRows: options.backgroundRows ?? Self.kernelBackgroundRows,
                what: "\(served.name) v\(served.version)",
                noBackground: "\(served.name) v\(served.version) has no background data to explain against: "
                    + (registry == nil
                        ? "put a sample of the training data, a CSV file with a header naming the model's columns, beside its model.onnx as \(Self.folderBackground)"
                        : "push a bundle packed with --reference TRAINING.csv (its reference sample is the background)"),
                check: limits.check, bound: bounded)
            return (attributions, rows.count, background)
        }
        guard inputs.count == 1, let input = inputs.first else {
            throw TernError.invalidArgument("an explanation takes one input of [rows, \(ready.width)] features; this request has \(inputs.count)")
        }
        let rows = try FeatureRows.rows(tensor: input, width: ready.width)
        let (attributions, _, background) = try await attributions(served, rows: rows, options: options)
        return (attributions, rows.count, background)
    }

    /// `explain: true` on an infer request: the answer's outputs plus the explanation as tensors
    /// (`explain_attributions` [rows, features] or [rows, features, outputs] as shap shapes them,
    /// `explain_base_values`, `explain_features`, `explain_outputs`, and KernelSHAP's `explain_standard_errors`).
    public func explain(_ served: ServedModel, request: InferenceRequest, inputs: [Tensor]) async throws -> [Tensor] {
        let options = try Options(request.parameters, prefix: "explain_")
        let ready = try await prepare(served)
        let (attributions, rows, _) = try await explain(served, inputs: inputs, ready: ready, options: options)
        let outputs = attributions.method == .kernel ? (try? ready.kernel?.get().outputNames) ?? ready.outputs : ready.outputs
        return try Self.tensors(attributions, rows: rows, ready: ready, outputs: outputs)
    }

    /// An explanation as tensors: `explain_attributions` ([rows, features], or [rows, features, outputs] as
    /// shap shapes them), `explain_base_values`, `explain_features`, `explain_outputs`, and KernelSHAP's
    /// `explain_standard_errors`.
    static func tensors(_ attributions: Attributions, rows: Int, ready: Prepared, outputs: [String]) throws(TernError) -> [Tensor] {
        let f = attributions.featureCount, k = attributions.outputs
        let shape = k == 1 ? [rows, f] : [rows, f, k]
        var tensors = [
            try Tensor(name: "explain_attributions", shape: shape, values: attributions.values.flatMap { $0 }),
            try Tensor(name: "explain_base_values", shape: [k], values: attributions.base),
            try Tensor(
                name: "explain_features", shape: [f], strings: ready.featureNames?.count == f ? ready.featureNames! : (0..<f).map { "feature_\($0)" }),
            try Tensor(name: "explain_outputs", shape: [k], strings: outputs.count == k ? outputs : (0..<k).map { "output_\($0)" }),
        ]
        if let errors = attributions.errors {
            tensors.append(try Tensor(name: "explain_standard_errors", shape: shape, values: errors.flatMap { $0 }))
        }
        return tensors
    }
}

/// How much work one explanation may cost: model rows evaluated (KernelSHAP: rows x coalitions x background
/// rows; interventional TreeSHAP: rows x background rows) and wall time. Past either: a 4xx naming the flag.
public struct ExplanationLimits: Sendable {
    /// `--max-explain-work`: model rows (or row and background pairs) one request may cost.
    public var maxWork: Int
    /// `--explain-timeout`: KernelSHAP stops between batches past it.
    public var timeout: Duration

    public init(maxWork: Int = 10_000_000, timeout: Duration = .seconds(30)) {
        self.maxWork = maxWork
        self.timeout = timeout
    }

    package func check(work: Double, what: String) throws(TernError) {
        guard work <= Double(maxWork) else {
            throw .invalidArgument(
                "this explanation would cost \(Int64(min(work, 9e18))) model rows (\(what)), more than --max-explain-work "
                    + "(\(maxWork)): explain fewer rows at once, or lower samples or background_rows")
        }
    }
}
