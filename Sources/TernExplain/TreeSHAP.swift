import Foundation

/// Exact interventional TreeSHAP: the Shapley values of `f(x_S, z_rest)` averaged over background rows z.
///
/// For one tree, one row x and one background row z, only the features whose split sends x and z different
/// ways matter. Walking both paths at once, a leaf is reached exactly when the features in A (those that
/// must take x's value) are in the coalition and those in B (z's value) are not; the Shapley value of that
/// indicator game is `(|A|-1)! |B|! / (|A|+|B|)!` for each feature of A and `-|A|! (|B|-1)! / (|A|+|B|)!` for
/// each of B. Cost per row: trees × background rows × the leaves the two paths can reach; no allocation in
/// the walk.
struct InterventionalTreeSHAP {
    let trees: TreeEnsemble
    let background: [[Double]]

    func explain(_ rows: [[Double]]) -> Attributions {
        let k = trees.outputs, width = trees.featureCount
        var base = [Double](repeating: 0, count: k)
        for z in background {
            let margins = trees.margins(z)
            for o in 0..<k { base[o] += margins[o] }
        }
        let count = Double(background.count)
        for o in 0..<k { base[o] /= count }
        let weights = ShapleyWeights(depth: 64)
        var walk = Walk(trees: trees, weights: weights, width: width)
        var values: [[Double]] = []
        values.reserveCapacity(rows.count)
        for row in rows {
            var phi = [Double](repeating: 0, count: width * k)
            row.withUnsafeBufferPointer { x in
                phi.withUnsafeMutableBufferPointer { phi in
                    for z in background {
                        z.withUnsafeBufferPointer { z in
                            for root in trees.roots { walk.run(Int(root), x, z, phi) }
                        }
                    }
                }
            }
            for i in phi.indices { phi[i] /= count }
            values.append(phi)
        }
        return Attributions(method: .interventional, link: trees.link, values: values, base: base,
                            margins: rows.map(trees.margins), outputs: k, featureCount: width)
    }

    /// The state of one walk: which features are fixed to x (1) or z (2), and the lists of each.
    struct Walk {
        let trees: TreeEnsemble
        let weights: ShapleyWeights
        var state: [UInt8]
        var fromX: [Int32] = []
        var fromZ: [Int32] = []

        init(trees: TreeEnsemble, weights: ShapleyWeights, width: Int) {
            self.trees = trees
            self.weights = weights
            state = [UInt8](repeating: 0, count: width)
            fromX.reserveCapacity(64)
            fromZ.reserveCapacity(64)
        }

        mutating func run(_ n: Int, _ x: UnsafeBufferPointer<Double>, _ z: UnsafeBufferPointer<Double>, _ phi: UnsafeMutableBufferPointer<Double>) {
            if trees.mode[n] == .leaf {
                let a = fromX.count, b = fromZ.count
                guard a + b > 0, a + b < weights.depth else { return }
                let k = trees.outputs
                if a > 0 {
                    let w = weights.value(a - 1, b)
                    for f in fromX { for o in 0..<k { phi[Int(f) * k + o] += w * trees.leafValues[n * k + o] } }
                }
                if b > 0 {
                    let w = weights.value(a, b - 1)
                    for f in fromZ { for o in 0..<k { phi[Int(f) * k + o] -= w * trees.leafValues[n * k + o] } }
                }
                return
            }
            let xNext = trees.next(n, x), zNext = trees.next(n, z)
            if xNext == zNext {
                run(xNext, x, z, phi)
                return
            }
            let f = Int(trees.feature[n])
            switch state[f] {
            case 1: run(xNext, x, z, phi)
            case 2: run(zNext, x, z, phi)
            default:
                state[f] = 1
                fromX.append(Int32(f))
                run(xNext, x, z, phi)
                fromX.removeLast()
                state[f] = 2
                fromZ.append(Int32(f))
                run(zNext, x, z, phi)
                fromZ.removeLast()
                state[f] = 0
            }
        }
    }
}

/// `a! b! / (a + b + 1)!` for a, b below `depth`: the Shapley weight of a coalition of a players out of
/// a + b + 1.
struct ShapleyWeights {
    let depth: Int
    private let table: [Double]

    init(depth: Int) {
        self.depth = depth
        var table = [Double](repeating: 0, count: depth * depth)
        for a in 0..<depth {
            for b in 0..<depth {
                // a! b! / (a+b+1)! = 1 / ((a+b+1) * C(a+b, a)), in logs to stay finite.
                table[a * depth + b] = exp(lgamma(Double(a + 1)) + lgamma(Double(b + 1)) - lgamma(Double(a + b + 2)))
            }
        }
        self.table = table
    }

    @inline(__always)
    func value(_ a: Int, _ b: Int) -> Double { table[a * depth + b] }
}

/// Path-dependent TreeSHAP (Lundberg, Erion and Lee's polynomial-time algorithm): exact Shapley values of
/// the expectation conditioned along each tree's splits, weighted by how many training rows (covers) took
/// each branch. Needs covers: the ONNX file's hit counts, or counts from a sample.
struct PathDependentTreeSHAP {
    let trees: TreeEnsemble

    private struct Element {
        var feature: Int32
        var zero: Double
        var one: Double
        var weight: Double
    }

    func explain(_ rows: [[Double]]) -> Attributions {
        let k = trees.outputs, width = trees.featureCount
        let covers = trees.covers ?? []
        // The expected margin: each leaf's value weighted by the share of rows reaching it.
        var base = trees.base
        let owner = treeOf
        for n in 0..<trees.mode.count where trees.mode[n] == .leaf {
            let total = covers[Int(owner[n])]
            guard total > 0 else { continue }
            for o in 0..<k { base[o] += trees.leafValues[n * k + o] * covers[n] / total }
        }
        let depth = maxDepth() + 2
        var values: [[Double]] = []
        for row in rows {
            var phi = [Double](repeating: 0, count: width * k)
            var path = [Element](repeating: Element(feature: -1, zero: 0, one: 0, weight: 0), count: (depth + 1) * (depth + 2) / 2 + depth)
            row.withUnsafeBufferPointer { x in
                for root in trees.roots {
                    recurse(Int(root), x: x, phi: &phi, path: &path, parentStart: 0, depth: 0, zero: 1, one: 1, feature: -1, covers: covers)
                }
            }
            values.append(phi)
        }
        return Attributions(method: .pathDependent, link: trees.link, values: values, base: base,
                            margins: rows.map(trees.margins), outputs: k, featureCount: width)
    }

    /// Each node's tree (its root).
    private var treeOf: [Int32] {
        var owner = [Int32](repeating: -1, count: trees.mode.count)
        for root in trees.roots {
            var stack = [Int(root)]
            while let n = stack.popLast() {
                owner[n] = root
                if trees.mode[n] != .leaf { stack.append(Int(trees.yes[n])); stack.append(Int(trees.no[n])) }
            }
        }
        return owner
    }

    private func maxDepth() -> Int {
        var deepest = 0
        for root in trees.roots {
            var stack = [(Int(root), 0)]
            while let (n, d) = stack.popLast() {
                deepest = max(deepest, d)
                if trees.mode[n] != .leaf { stack.append((Int(trees.yes[n]), d + 1)); stack.append((Int(trees.no[n]), d + 1)) }
            }
        }
        return deepest
    }

    private func recurse(
        _ n: Int, x: UnsafeBufferPointer<Double>, phi: inout [Double], path: inout [Element], parentStart: Int, depth: Int,
        zero: Double, one: Double, feature: Int32, covers: [Double]
    ) {
        // This level's copy of the path lives right after the parent's (depth + 1 elements).
        let start = parentStart + depth
        var depth = depth
        for i in 0..<depth { path[start + i] = path[parentStart + i] }
        extend(&path, start, depth, zero, one, feature)
        let k = trees.outputs
        if trees.mode[n] == .leaf {
            for i in 1...max(1, depth) where depth >= 1 {
                let w = unwoundSum(path, start, depth, i)
                let element = path[start + i]
                for o in 0..<k {
                    phi[Int(element.feature) * k + o] += w * (element.one - element.zero) * trees.leafValues[n * k + o]
                }
            }
            return
        }
        let hot = trees.next(n, x)
        let cold = hot == Int(trees.yes[n]) ? Int(trees.no[n]) : Int(trees.yes[n])
        let cover = covers[n]
        let hotZero = cover > 0 ? covers[hot] / cover : 0
        let coldZero = cover > 0 ? covers[cold] / cover : 0
        var incomingZero = 1.0, incomingOne = 1.0
        let split = trees.feature[n]
        var index = 0
        while index <= depth, path[start + index].feature != split { index += 1 }
        if index <= depth {
            incomingZero = path[start + index].zero
            incomingOne = path[start + index].one
            unwind(&path, start, depth, index)
            depth -= 1
        }
        // A branch no covered row took and x does not take carries no weight: its subtree adds nothing
        // (and its zero fractions would divide by zero when a later split on the same feature unwinds).
        if hotZero * incomingZero > 0 || incomingOne > 0 {
            recurse(hot, x: x, phi: &phi, path: &path, parentStart: start, depth: depth + 1,
                    zero: hotZero * incomingZero, one: incomingOne, feature: split, covers: covers)
        }
        if coldZero * incomingZero > 0 {
            recurse(cold, x: x, phi: &phi, path: &path, parentStart: start, depth: depth + 1,
                    zero: coldZero * incomingZero, one: 0, feature: split, covers: covers)
        }
    }

    private func extend(_ path: inout [Element], _ s: Int, _ depth: Int, _ zero: Double, _ one: Double, _ feature: Int32) {
        path[s + depth] = Element(feature: feature, zero: zero, one: one, weight: depth == 0 ? 1 : 0)
        var i = depth - 1
        while i >= 0 {
            path[s + i + 1].weight += one * path[s + i].weight * Double(i + 1) / Double(depth + 1)
            path[s + i].weight = zero * path[s + i].weight * Double(depth - i) / Double(depth + 1)
            i -= 1
        }
    }

    private func unwind(_ path: inout [Element], _ s: Int, _ depth: Int, _ index: Int) {
        let one = path[s + index].one, zero = path[s + index].zero
        var next = path[s + depth].weight
        var i = depth - 1
        while i >= 0 {
            if one != 0 {
                let t = path[s + i].weight
                path[s + i].weight = next * Double(depth + 1) / (Double(i + 1) * one)
                next = t - path[s + i].weight * zero * Double(depth - i) / Double(depth + 1)
            } else {
                path[s + i].weight = path[s + i].weight * Double(depth + 1) / (zero * Double(depth - i))
            }
            i -= 1
        }
        for j in index..<depth {
            path[s + j].feature = path[s + j + 1].feature
            path[s + j].zero = path[s + j + 1].zero
            path[s + j].one = path[s + j + 1].one
        }
    }

    private func unwoundSum(_ path: [Element], _ s: Int, _ depth: Int, _ index: Int) -> Double {
        let one = path[s + index].one, zero = path[s + index].zero
        var next = path[s + depth].weight
        var total = 0.0
        var i = depth - 1
        while i >= 0 {
            if one != 0 {
                let t = next * Double(depth + 1) / (Double(i + 1) * one)
                total += t
                next = path[s + i].weight - t * zero * (Double(depth - i) / Double(depth + 1))
            } else if zero != 0 {
                total += (path[s + i].weight / zero) / (Double(depth - i) / Double(depth + 1))
            }
            i -= 1
        }
        return total
    }
}
