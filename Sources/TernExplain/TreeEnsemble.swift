import TernCore

/// A tree ensemble as ONNX's TreeEnsembleClassifier/Regressor (ai.onnx.ml 1-3) describe it, flattened for
/// walking: every tree's nodes in one set of arrays, children as indices into them, leaf values as rows of
/// `outputs` margins.
public struct TreeEnsemble: Sendable {
    public enum Mode: UInt8, Sendable {
        case leq, lt, gte, gt, eq, neq, leaf
    }

    /// Each tree's root node.
    public var roots: [Int32]
    public var feature: [Int32]
    public var threshold: [Double]
    public var mode: [Mode]
    public var yes: [Int32]
    public var no: [Int32]
    /// Where a missing (NaN) value goes: the `yes` branch when true.
    public var missingYes: [Bool]
    /// Leaf `n`'s margins: `leafValues[n * outputs ..< (n + 1) * outputs]` (zero for inner nodes).
    public var leafValues: [Double]
    /// Rows of the training data (or the reference sample) that reached each node, when known: the ONNX
    /// file's `nodes_hitrates`, else computed from a sample (`withCovers`). Path-dependent TreeSHAP needs them.
    public var covers: [Double]?
    public var outputs: Int
    /// Added to every margin (`base_values`).
    public var base: [Double]
    public var link: Link
    public var featureCount: Int
    /// The class labels, for naming each output (a binary classifier's one output is its last class).
    public var classLabels: [String]

    init(node: Tern_Onnx_NodeProto, featureCount declared: Int?) throws(TernError) {
        let a = Attributes(node)
        let classifier = node.opType == "TreeEnsembleClassifier"
        let treeIDs = a.ints("nodes_treeids"), nodeIDs = a.ints("nodes_nodeids")
        let features = a.ints("nodes_featureids"), modes = a.strings("nodes_modes")
        let values = try a.reals("nodes_values")
        let trues = a.ints("nodes_truenodeids"), falses = a.ints("nodes_falsenodeids")
        let count = nodeIDs.count
        guard count > 0, treeIDs.count == count, features.count == count, modes.count == count, trues.count == count,
            falses.count == count, values.count == count || values.isEmpty
        else {
            throw a.fail("the nodes_* attributes disagree in length")
        }
        let missing = a.ints("nodes_missing_value_tracks_true")
        var index: [Int64: [Int64: Int32]] = [:]
        for i in 0..<count { index[treeIDs[i], default: [:]][nodeIDs[i]] = Int32(i) }
        func find(_ tree: Int64, _ node: Int64) throws(TernError) -> Int32 {
            guard let found = index[tree]?[node] else { throw a.fail("tree \(tree) has no node \(node)") }
            return found
        }
        var parsedModes: [Mode] = []
        parsedModes.reserveCapacity(count)
        for text in modes {
            switch text {
            case "BRANCH_LEQ": parsedModes.append(.leq)
            case "BRANCH_LT": parsedModes.append(.lt)
            case "BRANCH_GTE": parsedModes.append(.gte)
            case "BRANCH_GT": parsedModes.append(.gt)
            case "BRANCH_EQ": parsedModes.append(.eq)
            case "BRANCH_NEQ": parsedModes.append(.neq)
            case "LEAF": parsedModes.append(.leaf)
            default: throw a.fail("unknown node mode '\(text)'")
            }
        }
        var yes = [Int32](repeating: -1, count: count), no = [Int32](repeating: -1, count: count)
        for i in 0..<count where parsedModes[i] != .leaf {
            yes[i] = try find(treeIDs[i], trues[i])
            no[i] = try find(treeIDs[i], falses[i])
        }
        // Each tree's root: the node no other node points at.
        var pointedAt = Set<Int32>()
        for i in 0..<count where parsedModes[i] != .leaf {
            pointedAt.insert(yes[i])
            pointedAt.insert(no[i])
        }
        var roots: [Int32] = []
        var seenTrees = Set<Int64>()
        for i in 0..<count where !pointedAt.contains(Int32(i)) {
            guard seenTrees.insert(treeIDs[i]).inserted else { throw a.fail("tree \(treeIDs[i]) has more than one root") }
            roots.append(Int32(i))
        }
        // Leaf weights, by class (classifier) or target (regressor).
        let prefix = classifier ? "class" : "target"
        let weightTrees = a.ints("\(prefix)_treeids"), weightNodes = a.ints("\(prefix)_nodeids")
        let weightIDs = a.ints("\(prefix)_ids"), weights = try a.reals("\(prefix)_weights")
        guard weightTrees.count == weights.count, weightNodes.count == weights.count, weightIDs.count == weights.count else {
            throw a.fail("the \(prefix)_* attributes disagree in length")
        }
        let labels = a.ints("classlabels_int64s").map(String.init) + a.strings("classlabels_strings")
        let outputs: Int
        if classifier {
            let ids = Set(weightIDs)
            // Binary models carry one class's weights: the margin is that class's (the last label's) score.
            outputs = labels.count == 2 && ids.count == 1 ? 1 : labels.count
            guard outputs > 0, weightIDs.allSatisfy({ outputs == 1 || (0..<Int64(outputs)).contains($0) }) else {
                throw a.fail("class ids outside the \(labels.count) class labels")
            }
        } else {
            outputs = Int(a.int("n_targets") ?? 1)
            guard outputs > 0, weightIDs.allSatisfy({ (0..<Int64(outputs)).contains($0) }) else { throw a.fail("target ids outside n_targets") }
            if let aggregate = a.string("aggregate_function"), aggregate != "SUM", aggregate != "AVERAGE" {
                throw a.fail("aggregate_function \(aggregate) has no additive explanation (SUM and AVERAGE do)")
            }
        }
        var leafValues = [Double](repeating: 0, count: count * outputs)
        for w in 0..<weights.count {
            let node = Int(try find(weightTrees[w], weightNodes[w]))
            let column = outputs == 1 ? 0 : Int(weightIDs[w])
            leafValues[node * outputs + column] += weights[w]
        }
        if !classifier, a.string("aggregate_function") == "AVERAGE" {
            let trees = Double(roots.count)
            for i in leafValues.indices { leafValues[i] /= trees }
        }
        var base = try a.reals("base_values")
        if base.isEmpty { base = [Double](repeating: 0, count: outputs) }
        // A binary classifier with one base value per class keeps the positive class's.
        if base.count == 2, outputs == 1 { base = [base[1] - base[0]] }
        guard base.count == outputs else { throw a.fail("\(base.count) base_values for \(outputs) outputs") }
        let transform = a.string("post_transform") ?? "NONE"
        switch transform {
        case "NONE": link = .identity
        case "LOGISTIC": link = .logistic
        case "SOFTMAX": link = outputs == 1 ? .logistic : .softmax
        default: throw a.fail("post_transform \(transform) is not supported by the exact explainers (NONE, LOGISTIC, SOFTMAX are)")
        }
        let maxFeature = Int(features.max() ?? 0)
        if let declared, maxFeature >= declared { throw a.fail("a node splits on feature \(maxFeature) of \(declared)") }
        self.roots = roots
        self.feature = features.map { Int32($0) }
        self.threshold = values.isEmpty ? [Double](repeating: 0, count: count) : values
        self.mode = parsedModes
        self.yes = yes
        self.no = no
        self.missingYes = (0..<count).map { $0 < missing.count && missing[$0] != 0 }
        self.leafValues = leafValues
        // Converters write 1.0 for every node when they know no counts: covers only when they add up
        // (XGBoost's are sums of hessians, in float32).
        let hits = try a.reals("nodes_hitrates")
        let consistent =
            hits.count == count
            && (0..<count).allSatisfy { n in
                parsedModes[n] == .leaf || abs(hits[n] - hits[Int(yes[n])] - hits[Int(no[n])]) <= 1e-4 * max(1, hits[n])
            } && roots.allSatisfy { hits[Int($0)] > 0 }
        self.covers = consistent ? hits : nil
        self.outputs = outputs
        self.base = base
        self.featureCount = declared ?? maxFeature + 1
        self.classLabels = labels
    }

    /// The branch a row takes at inner node `n`.
    @inline(__always)
    func next(_ n: Int, _ row: UnsafeBufferPointer<Double>) -> Int {
        let x = row[Int(feature[n])]
        if x.isNaN { return Int(missingYes[n] ? yes[n] : no[n]) }
        let t = threshold[n]
        let goYes: Bool
        switch mode[n] {
        case .leq: goYes = x <= t
        case .lt: goYes = x < t
        case .gte: goYes = x >= t
        case .gt: goYes = x > t
        case .eq: goYes = x == t
        case .neq: goYes = x != t
        case .leaf: return n
        }
        return Int(goYes ? yes[n] : no[n])
    }

    /// The split (inner) nodes of the tree rooted at `root`, in depth-first order.
    func splits(below root: Int32) -> [Int32] {
        var found: [Int32] = [], stack = [root]
        while let n = stack.popLast() {
            guard mode[Int(n)] != .leaf else { continue }
            found.append(n)
            stack.append(no[Int(n)])
            stack.append(yes[Int(n)])
        }
        return found
    }

    /// The leaf a row reaches in the tree rooted at `root`.
    func leaf(_ root: Int32, _ row: UnsafeBufferPointer<Double>) -> Int {
        var n = Int(root)
        while mode[n] != .leaf { n = next(n, row) }
        return n
    }

    /// The model's margins for a row (base plus every tree's leaf).
    public func margins(_ row: [Double]) -> [Double] {
        var out = base
        row.withUnsafeBufferPointer { row in
            for root in roots {
                let n = leaf(root, row)
                for k in 0..<outputs { out[k] += leafValues[n * outputs + k] }
            }
        }
        return out
    }

    /// The ensemble with covers counted from `sample`'s rows (when the ONNX file holds no hit counts).
    public func withCovers(from sample: [[Double]]) -> TreeEnsemble {
        var counted = self
        var covers = [Double](repeating: 0, count: mode.count)
        for row in sample {
            row.withUnsafeBufferPointer { row in
                for root in roots {
                    var n = Int(root)
                    covers[n] += 1
                    while mode[n] != .leaf {
                        n = next(n, row)
                        covers[n] += 1
                    }
                }
            }
        }
        counted.covers = covers
        return counted
    }
}
