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
        /// KernelSHAP from the model's own answers, any model: exact when every coalition is valued,
        /// otherwise an estimate with a standard error (`errors`).
        case kernel
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
    /// KernelSHAP's standard error of each value (zero where exact), laid out as `values`; nil for exact methods.
    public var errors: [[Double]]? = nil

    public func value(row: Int, feature: Int, output: Int) -> Double { values[row][feature * outputs + output] }
}

/// The exact explainers, for a model whose structure was read from its ONNX file, prepared once against a
/// background (the walks of interventional TreeSHAP grouped, covers counted when the file has none) and
/// then used for any number of requests.
public final class Explainer: Sendable {
    public let structure: ModelStructure
    public let background: [[Double]]
    private let interventional: InterventionalTreeSHAP?
    /// The trees with covers (the file's, else counted on the background), when there are any.
    private let covered: TreeEnsemble?

    public init(_ structure: ModelStructure, background: [[Double]]) throws(TernError) {
        try Self.check(background, width: structure.featureCount, what: "background row")
        var structure = structure
        if case .trees(let trees) = structure, trees.covers == nil, !background.isEmpty {
            structure = .trees(trees.withCovers(from: background))
        }
        self.structure = structure
        self.background = background
        if case .trees(let trees) = structure {
            interventional = background.isEmpty ? nil : InterventionalTreeSHAP(trees: trees, background: background)
            covered = trees.covers == nil ? nil : trees
        } else {
            interventional = nil
            covered = nil
        }
    }

    /// The method used when none is asked for: interventional TreeSHAP for trees, exact linear attributions
    /// for linear models.
    public var defaultMethod: Attributions.Method {
        if case .linear = structure { return .linear }
        return background.isEmpty && covered != nil ? .pathDependent : .interventional
    }

    /// Background rows walked per explained row and tree (interventional TreeSHAP's cost), after grouping
    /// the rows that split alike.
    public var walksPerTree: Double? { interventional?.walksPerTree }

    public func explain(_ rows: [[Double]], method: Attributions.Method? = nil) throws(TernError) -> Attributions {
        try Self.check(rows, width: structure.featureCount, what: "row")
        switch (structure, method) {
        case (.trees, nil), (.trees, .interventional?):
            guard let interventional else {
                throw .invalidArgument("interventional TreeSHAP needs a background sample: give one (or a bundle with reference data)")
            }
            return interventional.explain(rows)
        case (.trees, .pathDependent?):
            guard let covered else {
                throw .invalidArgument(
                    "path-dependent TreeSHAP needs the trees' covers: this ONNX file has no hit counts, so give a sample (the training data or the bundle's reference data) to count them"
                )
            }
            return PathDependentTreeSHAP(trees: covered).explain(rows)
        case (.linear(let linear), nil), (.linear(let linear), .linear?):
            guard !background.isEmpty else { throw .invalidArgument("linear attributions need a background sample for the features' means") }
            return LinearAttributions.explain(linear, rows: rows, background: background)
        case (_, let method?):
            throw .invalidArgument("the \(method.rawValue) method does not apply to this model")
        }
    }

    /// Each row's `count` largest attributions (by size) for its largest output (a binary classifier's one
    /// output; a multiclass model's predicted class), named: what a batch run adds to each row.
    public func top(
        _ rows: [[Double]], count: Int, featureNames: [String]?, method: Attributions.Method? = nil
    ) throws(TernError) -> [[(feature: String, value: Double)]] {
        try explain(rows, method: method).top(count: count, featureNames: featureNames)
    }

    /// Prepares and explains in one call.
    public static func explain(
        _ structure: ModelStructure, rows: [[Double]], background: [[Double]], method: Attributions.Method? = nil
    ) throws(TernError) -> Attributions {
        try Explainer(structure, background: background).explain(rows, method: method)
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
        return Attributions(
            method: .linear, link: model.link, values: values, base: base,
            margins: rows.map(model.margins), outputs: k, featureCount: f)
    }
}

extension Attributions {
    /// Each row's `count` largest attributions by size, for its largest output (a binary model's one
    /// margin; a multiclass model's predicted class), with the features' names.
    public func top(count: Int, featureNames: [String]?) -> [[(feature: String, value: Double)]] {
        let width = featureCount
        let names = featureNames?.count == width ? featureNames! : (0..<width).map { "feature_\($0)" }
        return values.indices.map { r in
            let margins = self.margins[r]
            let output = margins.count == 1 ? 0 : margins.indices.max { margins[$0] < margins[$1] }!
            let ranked = (0..<width).sorted { abs(value(row: r, feature: $0, output: output)) > abs(value(row: r, feature: $1, output: output)) }
            return ranked.prefix(count).map { (names[$0], value(row: r, feature: $0, output: output)) }
        }
    }
}
