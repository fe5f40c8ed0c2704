import Foundation
import TernCore

/// KernelSHAP (Lundberg and Lee): Shapley values of any model, from the model's own answers. A coalition S
/// of features is valued as the mean output over the background rows with S's features set to the
/// explained row's; the attributions are the weighted least-squares fit of those values under the Shapley
/// kernel, constrained to add up to `f(x) − E[f(background)]`.
///
/// With `2^M − 2` coalitions or fewer within `samples` (M features), every coalition is valued and the
/// result is exact (the interventional Shapley values against the background). Otherwise coalitions are
/// drawn from the kernel's distribution in complementary pairs, and each value gets a standard error from
/// the spread of the fits on disjoint groups of the pairs.
public struct KernelSHAP: Sendable {
    /// Runs the model on `count` rows laid out one after another (`count × features` values) and answers
    /// `count × outputs` values in the same order.
    public typealias Predict = @Sendable (_ rows: [Double], _ count: Int) async throws -> [Double]

    /// Coalitions valued per explained row (each costs one model row per background row).
    public var samples: Int
    /// Seeds the coalition draws: the same seed gives the same attributions.
    public var seed: UInt64
    /// Model rows per call of `predict`.
    public var batchRows: Int

    public init(samples: Int = 2048, seed: UInt64 = 0, batchRows: Int = 16_384) {
        self.samples = samples
        self.seed = seed
        self.batchRows = batchRows
    }

    /// Groups the sampled pairs are split into for the error estimate.
    public static let errorGroups = 8

    /// Whether every coalition of `features` fits in `samples` (the result is then exact).
    public func isExact(features: Int) -> Bool { features < 31 && (1 << features) - 2 <= samples }

    public func explain(
        _ rows: [[Double]], background: [[Double]], outputs k: Int, predict: Predict
    ) async throws -> Attributions {
        guard let width = rows.first?.count ?? background.first?.count else {
            return Attributions(
                method: .kernel, link: .identity, values: [], base: [Double](repeating: 0, count: k),
                margins: [], outputs: k, featureCount: 0)
        }
        guard !background.isEmpty else {
            throw TernError.invalidArgument("KernelSHAP needs a background sample: give one (or a bundle with reference data)")
        }
        let base = try await meanOutputs(of: background, k: k, predict: predict).mean
        let margins = try await outputs(of: rows, k: k, predict: predict)
        var values: [[Double]] = [], errors: [[Double]] = []
        var generator = SplitMix64(seed: seed)
        for (r, x) in rows.enumerated() {
            let coalitions = self.coalitions(width: width, generator: &generator)
            let valued = try await value(coalitions.masks, x: x, background: background, k: k, predict: predict)
            let total = (0..<k).map { margins[r][$0] - base[$0] }
            let phi = Self.fit(coalitions.masks, weights: coalitions.weights, values: valued, base: base, total: total, width: width, k: k)
            values.append(phi)
            if coalitions.exact {
                errors.append([Double](repeating: 0, count: width * k))
            } else {
                // The pairs in `errorGroups` disjoint groups, each fitted alone: the spread of those fits over
                // √groups estimates the standard error of the fit on all of them.
                let groups = Self.errorGroups
                let pairs = coalitions.masks.count / 2
                var fits: [[Double]] = []
                for g in 0..<groups {
                    let chosen = (0..<pairs).filter { $0 % groups == g }.flatMap { [2 * $0, 2 * $0 + 1] }
                    fits.append(
                        Self.fit(
                            chosen.map { coalitions.masks[$0] }, weights: chosen.map { coalitions.weights[$0] },
                            values: chosen.map { valued[$0] }, base: base, total: total, width: width, k: k))
                }
                errors.append(
                    (0..<(width * k)).map { i in
                        let mean = fits.reduce(0) { $0 + $1[i] } / Double(groups)
                        let variance = fits.reduce(0) { $0 + ($1[i] - mean) * ($1[i] - mean) } / Double(groups - 1)
                        return (variance / Double(groups)).squareRoot()
                    })
            }
        }
        var attributions = Attributions(
            method: .kernel, link: .identity, values: values, base: base, margins: margins,
            outputs: k, featureCount: width)
        attributions.errors = errors
        return attributions
    }

    /// The coalitions valued for one row: all of them when they fit in `samples` (weighted by the Shapley
    /// kernel), else `samples` drawn from the kernel's distribution in complementary pairs (weighted alike).
    func coalitions(width: Int, generator: inout SplitMix64) -> (masks: [[Bool]], weights: [Double], exact: Bool) {
        if width == 1 { return ([], [], true) }
        if isExact(features: width) {
            var masks: [[Bool]] = [], weights: [Double] = []
            for bits in 1..<((1 << width) - 1) {
                let mask = (0..<width).map { bits & (1 << $0) != 0 }
                let size = mask.filter { $0 }.count
                masks.append(mask)
                weights.append(Double(width - 1) / (Self.binomial(width, size) * Double(size * (width - size))))
            }
            return (masks, weights, true)
        }
        // Sizes 1...M−1 with probability ∝ (M−1) / (s (M−s)); a pair is a size-s subset and its complement.
        let sizes = (1..<width).map { 1 / Double($0 * (width - $0)) }
        let total = sizes.reduce(0, +)
        var masks: [[Bool]] = []
        let pairs = max(Self.errorGroups * 2, samples / 2)
        masks.reserveCapacity(2 * pairs)
        for _ in 0..<pairs {
            var u = generator.nextUnit() * total, size = 1
            for (i, p) in sizes.enumerated() {
                u -= p
                size = i + 1
                if u <= 0 { break }
            }
            var order = Array(0..<width)
            for i in 0..<size {
                let j = i + Int(generator.next() % UInt64(width - i))
                order.swapAt(i, j)
            }
            var mask = [Bool](repeating: false, count: width)
            for i in 0..<size { mask[order[i]] = true }
            masks.append(mask)
            masks.append(mask.map { !$0 })
        }
        return (masks, [Double](repeating: 1, count: masks.count), false)
    }

    /// Each coalition's value: the mean output over the background with the coalition's features from `x`.
    private func value(
        _ masks: [[Bool]], x: [Double], background: [[Double]], k: Int, predict: Predict
    ) async throws -> [[Double]] {
        let width = x.count, perCoalition = background.count
        let coalitionsPerCall = max(1, batchRows / perCoalition)
        var valued: [[Double]] = []
        valued.reserveCapacity(masks.count)
        var start = 0
        while start < masks.count {
            let end = min(masks.count, start + coalitionsPerCall)
            var batch: [Double] = []
            batch.reserveCapacity((end - start) * perCoalition * width)
            for mask in masks[start..<end] {
                for z in background {
                    for f in 0..<width { batch.append(mask[f] ? x[f] : z[f]) }
                }
            }
            let answers = try await predict(batch, (end - start) * perCoalition)
            try Self.checkCount(answers, rows: (end - start) * perCoalition, k: k)
            for c in 0..<(end - start) {
                var mean = [Double](repeating: 0, count: k)
                for j in 0..<perCoalition {
                    let at = (c * perCoalition + j) * k
                    for o in 0..<k { mean[o] += answers[at + o] }
                }
                valued.append(mean.map { $0 / Double(perCoalition) })
            }
            start = end
        }
        return valued
    }

    private func outputs(of rows: [[Double]], k: Int, predict: Predict) async throws -> [[Double]] {
        var answers: [[Double]] = []
        var start = 0
        while start < rows.count {
            let end = min(rows.count, start + batchRows)
            let flat = try await predict(rows[start..<end].flatMap { $0 }, end - start)
            try Self.checkCount(flat, rows: end - start, k: k)
            for r in 0..<(end - start) { answers.append(Array(flat[(r * k)..<((r + 1) * k)])) }
            start = end
        }
        return answers
    }

    private func meanOutputs(of rows: [[Double]], k: Int, predict: Predict) async throws -> (mean: [Double], all: [[Double]]) {
        let all = try await outputs(of: rows, k: k, predict: predict)
        var mean = [Double](repeating: 0, count: k)
        for row in all { for o in 0..<k { mean[o] += row[o] } }
        return (mean.map { $0 / Double(max(1, rows.count)) }, all)
    }

    private static func checkCount(_ answers: [Double], rows: Int, k: Int) throws {
        guard answers.count == rows * k else {
            throw TernError.internalError("the model answered \(answers.count) values for \(rows) rows of \(k) outputs")
        }
    }

    /// The constrained weighted least squares: minimise Σ w (v(S) − base − Σ_{j∈S} φ_j)² subject to Σ φ = total,
    /// by eliminating the last feature (φ_M = total − Σ_{j<M} φ_j) and solving the normal equations.
    static func fit(
        _ masks: [[Bool]], weights: [Double], values: [[Double]], base: [Double], total: [Double], width: Int, k: Int
    ) -> [Double] {
        var phi = [Double](repeating: 0, count: width * k)
        if width == 1 {
            for o in 0..<k { phi[o] = total[o] }
            return phi
        }
        let n = width - 1
        var normal = [Double](repeating: 0, count: n * n)
        var right = [Double](repeating: 0, count: n * k)
        var design = [Double](repeating: 0, count: n)
        for (i, mask) in masks.enumerated() {
            let last = mask[n] ? 1.0 : 0.0
            for j in 0..<n { design[j] = (mask[j] ? 1.0 : 0.0) - last }
            let w = weights[i]
            for a in 0..<n where design[a] != 0 {
                for b in 0..<n where design[b] != 0 { normal[a * n + b] += w * design[a] * design[b] }
                for o in 0..<k {
                    let target = values[i][o] - base[o] - last * total[o]
                    right[a * k + o] += w * design[a] * target
                }
            }
        }
        let solved = solve(normal, right, n: n, k: k)
        for o in 0..<k {
            var sum = 0.0
            for j in 0..<n {
                phi[j * k + o] = solved[j * k + o]
                sum += solved[j * k + o]
            }
            phi[n * k + o] = total[o] - sum
        }
        return phi
    }

    /// Solves `A X = B` (A n×n symmetric, B n×k) by Gaussian elimination with partial pivoting; a singular
    /// direction (a feature no coalition separates) gets zero.
    static func solve(_ a: [Double], _ b: [Double], n: Int, k: Int) -> [Double] {
        var a = a, b = b
        var scale = 0.0
        for value in a { scale = max(scale, abs(value)) }
        let tiny = max(scale, 1e-300) * 1e-12
        var pivotRows = [Int](repeating: -1, count: n)
        var row = 0
        for column in 0..<n where row < n {
            var best = row
            for r in row..<n where abs(a[r * n + column]) > abs(a[best * n + column]) { best = r }
            guard abs(a[best * n + column]) > tiny else { continue }
            if best != row {
                for c in 0..<n { a.swapAt(row * n + c, best * n + c) }
                for o in 0..<k { b.swapAt(row * k + o, best * k + o) }
            }
            for r in 0..<n where r != row {
                let factor = a[r * n + column] / a[row * n + column]
                guard factor != 0 else { continue }
                for c in 0..<n { a[r * n + c] -= factor * a[row * n + c] }
                for o in 0..<k { b[r * k + o] -= factor * b[row * k + o] }
            }
            pivotRows[column] = row
            row += 1
        }
        var x = [Double](repeating: 0, count: n * k)
        for column in 0..<n {
            let r = pivotRows[column]
            guard r >= 0 else { continue }
            for o in 0..<k { x[column * k + o] = b[r * k + o] / a[r * n + column] }
        }
        return x
    }

    static func binomial(_ n: Int, _ k: Int) -> Double {
        exp(lgamma(Double(n + 1)) - lgamma(Double(k + 1)) - lgamma(Double(n - k + 1)))
    }
}
