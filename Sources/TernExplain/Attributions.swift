import TernCore

/// Why a model answered what it did for each row: per feature and output, how much it moved the margin
/// away from the base value (the background's average margin). `base + Σ values = margin` for every row.
public struct Attributions: Sendable, Equatable {
    public enum Method: String, Sendable, Codable {
        /// Exact Shapley values of the model against a background sample (features outside a coalition
        /// take each background row's values in turn).
        case interventional
        /// Exact Shapley values of the conditional expectation along the trees' own splits (covers).
        case pathDependent = "path_dependent"
        /// Exact for a linear model: coefficient × (value − background mean).
        case linear
    }

    public var method: Method
    public var link: Link
    /// `values[row][feature * outputs + output]`.
    public var values: [[Double]]
    /// The expected margin per output.
    public var base: [Double]
    /// Each row's margins.
    public var margins: [[Double]]
    public var outputs: Int
    public var featureCount: Int

    public func value(row: Int, feature: Int, output: Int) -> Double { values[row][feature * outputs + output] }
}

/// The exact explainers, for a model whose structure was read from its ONNX file.
public enum Explainer {
    /// Explains `rows` against `background` with the method that fits the model: interventional TreeSHAP
    /// for trees, exact linear attributions for linear models.
    public static func explain(
        _ structure: ModelStructure, rows: [[Double]], background: [[Double]], method: Attributions.Method? = nil
    ) throws(TernError) -> Attributions {
        try check(rows, width: structure.featureCount, what: "row")
        switch (structure, method) {
        case (.trees(let trees), nil), (.trees(let trees), .interventional?):
            guard !background.isEmpty else { throw .invalidArgument("interventional TreeSHAP needs a background sample: give one (or a bundle with reference data)") }
            try check(background, width: structure.featureCount, what: "background row")
            return InterventionalTreeSHAP(trees: trees, background: background).explain(rows)
        case (.trees(var trees), .pathDependent?):
            if trees.covers == nil {
                guard !background.isEmpty else {
                    throw .invalidArgument("path-dependent TreeSHAP needs the trees' covers: this ONNX file has no hit counts, so give a sample (the training data or the bundle's reference data) to count them")
                }
                try check(background, width: structure.featureCount, what: "background row")
                trees = trees.withCovers(from: background)
            }
            return PathDependentTreeSHAP(trees: trees).explain(rows)
        case (.linear(let linear), nil), (.linear(let linear), .linear?):
            guard !background.isEmpty else { throw .invalidArgument("linear attributions need a background sample for the features' means") }
            try check(background, width: structure.featureCount, what: "background row")
            return LinearAttributions.explain(linear, rows: rows, background: background)
        case (_, let method?):
            throw .invalidArgument("the \(method.rawValue) method does not apply to this model")
        }
    }

    private static func check(_ rows: [[Double]], width: Int, what: String) throws(TernError) {
        for (i, row) in rows.enumerated() where row.count != width {
            throw .invalidArgument("\(what) \(i + 1) has \(row.count) values; the model takes \(width) features")
        }
    }
}

/// Exact linear attributions: `w_kf · (x_f − mean_f)`, base `w_k · mean + b_k`.
enum LinearAttributions {
    static func explain(_ model: LinearModel, rows: [[Double]], background: [[Double]]) -> Attributions {
        let f = model.featureCount, k = model.outputs
        var mean = [Double](repeating: 0, count: f)
        for row in background { for j in 0..<f { mean[j] += row[j] } }
        for j in 0..<f { mean[j] /= Double(background.count) }
        let base = model.margins(mean)
        var values: [[Double]] = []
        values.reserveCapacity(rows.count)
        for row in rows {
            var phi = [Double](repeating: 0, count: f * k)
            for j in 0..<f {
                for o in 0..<k { phi[j * k + o] = model.coefficients[o * f + j] * (row[j] - mean[j]) }
            }
            values.append(phi)
        }
        return Attributions(method: .linear, link: model.link, values: values, base: base,
                            margins: rows.map(model.margins), outputs: k, featureCount: f)
    }
}
