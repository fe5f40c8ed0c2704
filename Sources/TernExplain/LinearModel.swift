import TernCore

/// ONNX's LinearClassifier/LinearRegressor: margins = coefficients · x + intercepts, per output.
public struct LinearModel: Sendable {
    /// `coefficients[k * featureCount + f]`.
    public var coefficients: [Double]
    public var intercepts: [Double]
    public var outputs: Int
    public var featureCount: Int
    public var link: Link
    public var classLabels: [String]

    init(node: Tern_Onnx_NodeProto, featureCount declared: Int?) throws(TernError) {
        let a = Attributes(node)
        let coefficients = try a.reals("coefficients")
        var intercepts = try a.reals("intercepts")
        let labels = a.ints("classlabels_ints").map(String.init) + a.strings("classlabels_strings")
        let rows: Int
        if node.opType == "LinearClassifier" {
            rows = labels.count == 2 && coefficients.count == (declared ?? coefficients.count / 2) * 2 ? 2 : max(1, labels.count)
        } else {
            rows = Int(a.int("targets") ?? 1)
        }
        guard rows > 0, !coefficients.isEmpty, coefficients.count % rows == 0 else {
            throw a.fail("\(coefficients.count) coefficients for \(rows) outputs")
        }
        let features = coefficients.count / rows
        if let declared, declared != features { throw a.fail("\(features) coefficients per output for \(declared) features") }
        if intercepts.isEmpty { intercepts = [Double](repeating: 0, count: rows) }
        guard intercepts.count == rows else { throw a.fail("\(intercepts.count) intercepts for \(rows) outputs") }
        var weights = coefficients
        var outputs = rows
        // scikit-learn's binary logistic regression is written as two rows, the first the second negated:
        // one margin (the positive class's log-odds) says it all.
        if rows == 2, node.opType == "LinearClassifier" {
            let first = coefficients[..<features], second = coefficients[features...]
            if zip(first, second).allSatisfy({ abs($0 + $1) <= 1e-12 * max(1, abs($1)) }) {
                weights = Array(second)
                intercepts = [intercepts[1]]
                outputs = 1
            }
        }
        let transform = a.string("post_transform") ?? "NONE"
        switch transform {
        case "NONE": link = .identity
        case "LOGISTIC": link = .logistic
        case "SOFTMAX": link = outputs == 1 ? .logistic : .softmax
        default: throw a.fail("post_transform \(transform) is not supported by the exact explainers")
        }
        self.coefficients = weights
        self.intercepts = intercepts
        self.outputs = outputs
        self.featureCount = features
        self.classLabels = labels
    }

    public func margins(_ row: [Double]) -> [Double] {
        (0..<outputs).map { k in
            var sum = intercepts[k]
            for f in 0..<featureCount { sum += coefficients[k * featureCount + f] * row[f] }
            return sum
        }
    }
}
