import Foundation

/// Exact interventional TreeSHAP: the Shapley values of `f(x_S, z_rest)` averaged over background rows z.
///
/// For one tree, one row x and one background row z, only the features whose split sends x and z different
/// ways matter. Walking both paths at once, a leaf is reached exactly when the features in A (those that
/// must take x's value) are in the coalition and those in B (z's value) are not; the Shapley value of that
/// indicator game is `(|A|-1)! |B|! / (|A|+|B|)!` for each feature of A and `-|A|! (|B|-1)! / (|A|+|B|)!` for
/// each of B. Cost per row: trees × background rows × the leaves the two paths can reach; no allocation in
/// the walk.
final class InterventionalTreeSHAP: Sendable {
    let trees: TreeEnsemble
    let background: [[Double]]
    /// The background's mean margin per output.
    let base: [Double]
    /// Per tree, the background rows that take the same branch at every split of the tree walk identically
    /// with any x: one representative of each such group, how many rows it stands for, and its leaf.
    let groups: [[Group]]

    /// Each tree's split nodes, and each node's place among its tree's splits (-1 for leaves).
    let splits: [[Int32]]
    let local: [Int32]
    /// Per tree, the branch each group takes at each split (1: yes), `[group * splits + split]`.
    let directions: [[UInt8]]

    struct Group: Sendable {
        var row: Int32
        var count: Double
        var leaf: Int32
    }

    /// Prepares the walks over `background` (done once per model version: it costs a pass of the background
    /// through every split).
    init(trees: TreeEnsemble, background: [[Double]]) {
        self.trees = trees
        self.background = background
        let k = trees.outputs
        var base = [Double](repeating: 0, count: k)
        for z in background {
            let margins = trees.margins(z)
            for o in 0..<k { base[o] += margins[o] }
        }
        for o in 0..<k { base[o] /= Double(max(1, background.count)) }
        self.base = base
        var groups: [[Group]] = [], splits: [[Int32]] = [], directions: [[UInt8]] = []
        var local = [Int32](repeating: -1, count: trees.mode.count)
        groups.reserveCapacity(trees.roots.count)
        for root in trees.roots {
            let tree = trees.splits(below: root)
            for (i, n) in tree.enumerated() { local[Int(n)] = Int32(i) }
            let words = max(1, (tree.count + 63) / 64)
            var index: [[UInt64]: Int] = [:]
            var found: [Group] = [], taken: [UInt8] = []
            var way = [UInt8](repeating: 0, count: tree.count)
            for (j, z) in background.enumerated() {
                var signature = [UInt64](repeating: 0, count: words)
                z.withUnsafeBufferPointer { z in
                    for (i, n) in tree.enumerated() {
                        let yes = trees.next(Int(n), z) == Int(trees.yes[Int(n)])
                        way[i] = yes ? 1 : 0
                        if yes { signature[i >> 6] |= 1 << UInt64(i & 63) }
                    }
                }
                if let at = index[signature] {
                    found[at].count += 1
                } else {
                    index[signature] = found.count
                    let leaf = z.withUnsafeBufferPointer { trees.leaf(root, $0) }
                    found.append(Group(row: Int32(j), count: 1, leaf: Int32(leaf)))
                    taken += way
                }
            }
            groups.append(found)
            splits.append(tree)
            directions.append(taken)
        }
        self.groups = groups
        self.splits = splits
        self.directions = directions
        self.local = local
    }

    /// Background rows walked per explained row and tree, on average (at most the background's size).
    var walksPerTree: Double { Double(groups.reduce(0) { $0 + $1.count }) / Double(max(1, groups.count)) }

    func explain(_ rows: [[Double]]) -> Attributions {
        let k = trees.outputs, width = trees.featureCount
        let walk = Walk(trees: trees, local: local, weights: ShapleyWeights(depth: 64), width: width)
        let count = Double(background.count)
        var values: [[Double]] = []
        values.reserveCapacity(rows.count)
        var way = [UInt8](repeating: 0, count: max(1, splits.map(\.count).max() ?? 1))
        for row in rows {
            var phi = [Double](repeating: 0, count: width * k)
            row.withUnsafeBufferPointer { x in
                phi.withUnsafeMutableBufferPointer { phi in
                    way.withUnsafeMutableBufferPointer { way in
                        for (t, root) in trees.roots.enumerated() {
                            // x's branch at every split, once; the groups' were taken when prepared.
                            let tree = splits[t]
                            for i in tree.indices {
                                let n = Int(tree[i])
                                way[i] = trees.next(n, x) == Int(trees.yes[n]) ? 1 : 0
                            }
                            // A background row that lands in x's leaf took x's path all the way and adds nothing.
                            let xLeaf = Int32(trees.leaf(root, x))
                            directions[t].withUnsafeBufferPointer { taken in
                                for (g, group) in groups[t].enumerated() where group.leaf != xLeaf {
                                    walk.scale = group.count
                                    walk.run(Int(root), UnsafePointer(way.baseAddress!), taken.baseAddress! + g * tree.count, phi)
                                }
                            }
                        }
                    }
                }
            }
            for i in phi.indices { phi[i] /= count }
            values.append(phi)
        }
        return Attributions(
            method: .interventional, link: trees.link, values: values, base: base,
            margins: rows.map(trees.margins), outputs: k, featureCount: width)
    }

    /// The state of one walk: which features are fixed to x (1) or z (2), and the lists of each, over raw
    /// copies of the trees' arrays (the walk is the whole cost: no reference counting, no uniqueness checks).
    final class Walk {
        let weights: ShapleyWeights
        let outputs: Int
        private let mode: UnsafeMutableBufferPointer<TreeEnsemble.Mode>
        private let feature: UnsafeMutableBufferPointer<Int32>
        private let yes: UnsafeMutableBufferPointer<Int32>
        private let no: UnsafeMutableBufferPointer<Int32>
        private let leafValues: UnsafeMutableBufferPointer<Double>
        private let local: UnsafeMutableBufferPointer<Int32>
        private let state: UnsafeMutableBufferPointer<UInt8>
        private let fromX: UnsafeMutablePointer<Int32>
        private let fromZ: UnsafeMutablePointer<Int32>
        private var a = 0
        private var b = 0
        /// How many background rows the walked one stands for.
        var scale = 1.0

        init(trees: TreeEnsemble, local: [Int32], weights: ShapleyWeights, width: Int) {
            func copy<T>(_ array: [T]) -> UnsafeMutableBufferPointer<T> {
                let buffer = UnsafeMutableBufferPointer<T>.allocate(capacity: max(1, array.count))
                _ = buffer.initialize(from: array)
                return buffer
            }
            self.weights = weights
            outputs = trees.outputs
            mode = copy(trees.mode)
            feature = copy(trees.feature)
            yes = copy(trees.yes)
            no = copy(trees.no)
            leafValues = copy(trees.leafValues)
            self.local = copy(local)
            state = copy([UInt8](repeating: 0, count: width))
            fromX = .allocate(capacity: weights.depth)
            fromZ = .allocate(capacity: weights.depth)
        }

        deinit {
            for buffer in [
                UnsafeMutableRawPointer(mode.baseAddress!), UnsafeMutableRawPointer(feature.baseAddress!),
                UnsafeMutableRawPointer(yes.baseAddress!), UnsafeMutableRawPointer(no.baseAddress!),
                UnsafeMutableRawPointer(leafValues.baseAddress!), UnsafeMutableRawPointer(state.baseAddress!),
                UnsafeMutableRawPointer(local.baseAddress!),
                UnsafeMutableRawPointer(fromX), UnsafeMutableRawPointer(fromZ),
            ] {
                buffer.deallocate()
            }
        }

        /// Walks from `start` with x's and z's branch at each split (`xWay`, `zWay`, by the split's place in its tree).
        func run(_ start: Int, _ xWay: UnsafePointer<UInt8>, _ zWay: UnsafePointer<UInt8>, _ phi: UnsafeMutableBufferPointer<Double>) {
            var n = start
            // Down the common path without recursion: where x and z agree, or the feature is already fixed.
            while mode[n] != .leaf {
                let l = Int(local[n])
                let xNext = Int(xWay[l] != 0 ? yes[n] : no[n]), zNext = Int(zWay[l] != 0 ? yes[n] : no[n])
                if xNext == zNext {
                    n = xNext
                    continue
                }
                let f = Int(feature[n])
                switch state[f] {
                case 1: n = xNext
                case 2: n = zNext
                default:
                    state[f] = 1
                    fromX[a] = Int32(f)
                    a += 1
                    run(xNext, xWay, zWay, phi)
                    a -= 1
                    state[f] = 2
                    fromZ[b] = Int32(f)
                    b += 1
                    run(zNext, xWay, zWay, phi)
                    b -= 1
                    state[f] = 0
                    return
                }
            }
            guard a + b > 0, a + b < weights.depth else { return }
            let k = outputs
            if a > 0 {
                let w = weights.value(a - 1, b) * scale
                for i in 0..<a {
                    let f = Int(fromX[i]) * k
                    for o in 0..<k { phi[f + o] += w * leafValues[n * k + o] }
                }
            }
            if b > 0 {
                let w = weights.value(a, b - 1) * scale
                for i in 0..<b {
                    let f = Int(fromZ[i]) * k
                    for o in 0..<k { phi[f + o] -= w * leafValues[n * k + o] }
                }
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
        let path = UnsafeMutablePointer<Element>.allocate(capacity: (depth + 1) * (depth + 2) / 2 + depth + 1)
        defer { path.deallocate() }
        var values: [[Double]] = []
        values.reserveCapacity(rows.count)
        covers.withUnsafeBufferPointer { covers in
            trees.leafValues.withUnsafeBufferPointer { leaves in
                for row in rows {
                    var phi = [Double](repeating: 0, count: width * k)
                    row.withUnsafeBufferPointer { x in
                        phi.withUnsafeMutableBufferPointer { phi in
                            let walk = Walk(trees: trees, x: x, phi: phi, covers: covers, leaves: leaves, outputs: k)
                            for root in trees.roots {
                                walk.recurse(Int(root), parent: path, level: path, depth: 0, zero: 1, one: 1, feature: -1)
                            }
                        }
                    }
                    values.append(phi)
                }
            }
        }
        return Attributions(
            method: .pathDependent, link: trees.link, values: values, base: base,
            margins: rows.map(trees.margins), outputs: k, featureCount: width)
    }

    /// Each node's tree (its root).
    private var treeOf: [Int32] {
        var owner = [Int32](repeating: -1, count: trees.mode.count)
        for root in trees.roots {
            var stack = [Int(root)]
            while let n = stack.popLast() {
                owner[n] = root
                if trees.mode[n] != .leaf {
                    stack.append(Int(trees.yes[n]))
                    stack.append(Int(trees.no[n]))
                }
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
                if trees.mode[n] != .leaf {
                    stack.append((Int(trees.yes[n]), d + 1))
                    stack.append((Int(trees.no[n]), d + 1))
                }
            }
        }
        return deepest
    }

    /// One row's walk: the tree, the row, where attributions go; the path elements live in one buffer,
    /// each level's copy right after its parent's.
    private struct Walk {
        let trees: TreeEnsemble
        let x: UnsafeBufferPointer<Double>
        let phi: UnsafeMutableBufferPointer<Double>
        let covers: UnsafeBufferPointer<Double>
        let leaves: UnsafeBufferPointer<Double>
        let outputs: Int

        func recurse(
            _ n: Int, parent: UnsafeMutablePointer<Element>, level: UnsafeMutablePointer<Element>, depth: Int,
            zero: Double, one: Double, feature: Int32
        ) {
            let p = level
            var depth = depth
            if p != parent { p.update(from: parent, count: depth) }
            PathDependentTreeSHAP.extend(p, depth, zero, one, feature)
            let k = outputs
            if trees.mode[n] == .leaf {
                guard depth >= 1 else { return }
                for i in 1...depth {
                    let w = PathDependentTreeSHAP.unwoundSum(p, depth, i)
                    let element = p[i]
                    let scale = w * (element.one - element.zero)
                    let f = Int(element.feature) * k
                    for o in 0..<k { phi[f + o] += scale * leaves[n * k + o] }
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
            while index <= depth, p[index].feature != split { index += 1 }
            if index <= depth {
                incomingZero = p[index].zero
                incomingOne = p[index].one
                PathDependentTreeSHAP.unwind(p, depth, index)
                depth -= 1
            }
            // The children's copies start after this level's depth + 1 elements.
            let child = p + depth + 1
            // A branch no covered row took and x does not take carries no weight: its subtree adds nothing
            // (and its zero fractions would divide by zero when a later split on the same feature unwinds).
            if hotZero * incomingZero > 0 || incomingOne > 0 {
                recurse(hot, parent: p, level: child, depth: depth + 1, zero: hotZero * incomingZero, one: incomingOne, feature: split)
            }
            if coldZero * incomingZero > 0 {
                recurse(cold, parent: p, level: child, depth: depth + 1, zero: coldZero * incomingZero, one: 0, feature: split)
            }
        }
    }

    private static func extend(_ path: UnsafeMutablePointer<Element>, _ depth: Int, _ zero: Double, _ one: Double, _ feature: Int32) {
        let s = 0
        path[s + depth] = Element(feature: feature, zero: zero, one: one, weight: depth == 0 ? 1 : 0)
        var i = depth - 1
        while i >= 0 {
            path[s + i + 1].weight += one * path[s + i].weight * Double(i + 1) / Double(depth + 1)
            path[s + i].weight = zero * path[s + i].weight * Double(depth - i) / Double(depth + 1)
            i -= 1
        }
    }

    private static func unwind(_ path: UnsafeMutablePointer<Element>, _ depth: Int, _ index: Int) {
        let s = 0
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

    private static func unwoundSum(_ path: UnsafeMutablePointer<Element>, _ depth: Int, _ index: Int) -> Double {
        let s = 0
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
