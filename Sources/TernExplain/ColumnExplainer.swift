import Foundation
import TernCore
import TernONNX

/// Explains a model through its source columns: one attribution per column (an `[N,1]` input, or one
/// column of an `[N,k]` matrix), whatever the graph does with it. Exact where the graph is preprocessing
/// feeding a tree ensemble or a linear model (explained in the ensemble's feature space against the
/// background transformed by the model's own preprocessing, then each column's derived features summed),
/// else KernelSHAP over the columns (a coalition's absent columns, strings included, take the background
/// row's values). The server's explain paths and `tern explain` share it.
package struct ColumnExplainer: Sendable {
    package var columns: SourceColumns
    /// The background as cells, in the columns' order.
    package var background: [[Cell]]
    package var preprocessing: Preprocessing?
    /// The exact explainer in the preprocessed feature space, its walks prepared on the transformed background.
    package var exact: Explainer?
    /// Why the graph is not explained exactly (KernelSHAP over the columns then).
    package var unsupported: String?
    package var kernel: Result<KernelTarget, TernError>?

    /// Reads the graph's preprocessing (when it has one) and prepares both explainers. Without background
    /// rows neither can run; `explain` then says what to provide.
    package static func prepare(
        model: any InferenceModel, onnx: ONNXModel, data: Data, columns: SourceColumns, background: [[Cell]]
    ) async throws -> ColumnExplainer {
        var explainer = ColumnExplainer(columns: columns, background: background)
        guard let probe = background.first else { return explainer }
        do {
            let preprocessing = try await Preprocessing.read(onnx: data, columns: columns, probe: background) { path throws(TernError) in
                try onnx.sibling(path: path)
            }
            explainer.preprocessing = preprocessing
            explainer.exact = try Explainer(preprocessing.structure, background: try await preprocessing.transform(background))
        } catch {
            explainer.unsupported = (error as? TernError)?.message ?? "\(error)"
        }
        do {
            explainer.kernel = .success(try await KernelTarget(model: model, columns: columns, probe: probe))
        } catch {
            explainer.kernel = .failure(error as? TernError ?? .internalError("\(error)"))
        }
        return explainer
    }

    private init(columns: SourceColumns, background: [[Cell]]) {
        self.columns = columns
        self.background = background
    }

    /// The outputs the attributions are in: the ensemble's margins when exact, else the model's floating-point outputs.
    package var outputs: [String] {
        exact.map { ExplanationJSON.outputNames($0.structure) } ?? (try? kernel?.get().outputNames) ?? []
    }

    /// Explains rows of cells. `check` refuses work past a budget (model rows, and what they are);
    /// `bound` wraps KernelSHAP's model calls (deadlines, cancellation); `noBackground` is the error
    /// when there is nothing to explain against; `what` names the model in messages.
    package func explain(
        _ rows: [[Cell]], method: Attributions.Method?, kernel settings: KernelSHAP, backgroundRows: Int,
        what: String, noBackground: String,
        check: (Double, String) throws(TernError) -> Void = { _, _ throws(TernError) in },
        bound: (@escaping KernelSHAP.Predict) -> KernelSHAP.Predict = { $0 }
    ) async throws -> (Attributions, backgroundRows: Int) {
        if let exact, let preprocessing, method != .kernel {
            let work = Double(rows.count) * Double(method == .pathDependent ? 1 : max(1, exact.background.count))
            try check(work, "\(rows.count) rows x \(exact.background.count) background rows")
            let features = try await preprocessing.transform(rows)
            return (preprocessing.grouped(try exact.explain(features, method: method)), exact.background.count)
        }
        if let method, method != .kernel {
            throw TernError.invalidArgument(
                "the \(method.rawValue) method needs a tree ensemble or a linear model read through the model's preprocessing; "
                    + "\(what) is not one (\(unsupported ?? "no background to read it with")): use method kernel")
        }
        guard let kernel else { throw TernError.invalidArgument(noBackground) }
        let target = try kernel.get()
        var codes = CellCodes(columns: columns.count)
        let background = codes.encode(Array(self.background.prefix(backgroundRows)))
        let encoded = codes.encode(rows)
        let width = columns.count
        let coalitions = settings.isExact(features: width) ? (1 << width) - 2 : max(4 * KernelSHAP.errorGroups, settings.samples)
        try check(
            Double(rows.count) * Double(coalitions) * Double(max(1, background.count)),
            "\(rows.count) rows x \(coalitions) coalitions x \(background.count) background rows")
        let attributions = try await settings.explain(
            encoded, background: background, outputs: target.columns, predict: bound(target.predict(columns: columns, codes: codes)))
        return (attributions, background.count)
    }

    /// Each row's `count` largest per-column attributions, exactly (for batch scoring: KernelSHAP would cost
    /// thousands of model rows per row). The inputs are the model's tensors for the rows.
    package func top(_ inputs: [Tensor], count: Int) async throws -> [[(feature: String, value: Double)]] {
        let rows = try columns.rows(tensors: inputs)
        let (attributions, _) = try await explain(
            rows, method: nil, kernel: KernelSHAP(samples: 16), backgroundRows: 0, what: "the model", noBackground: "no background")
        return attributions.top(count: count, featureNames: columns.names)
    }

    /// Why per-column batch explanations cannot run (nil when they can): exact only, with a background.
    package var batchRefusal: String? {
        if exact != nil, preprocessing != nil { return nil }
        if background.isEmpty { return "no background rows to explain against" }
        return "no tree ensemble or linear model is read through its preprocessing (\(unsupported ?? "")); "
            + "KernelSHAP is too slow for batches: explain rows with the explain route or tern explain"
    }
}
