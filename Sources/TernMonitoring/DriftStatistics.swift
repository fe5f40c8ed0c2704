import Foundation

/// Drift statistics between a reference sample (training data) and a live one, each computed exactly as the
/// scipy or numpy function it is named after computes it, so that a user's notebook and Tern agree to the
/// last digits (tests compare with golden values scipy made).
public enum DriftStatistics {
    // MARK: Kolmogorov-Smirnov

    /// The two-sample Kolmogorov-Smirnov test, two-sided, as `scipy.stats.ks_2samp(reference, live)` with its
    /// default `method="auto"`: the largest distance between the two empirical CDFs, and its p-value,
    /// exact (Hodges' lattice-path counts, in Viehmann's numerically stable form) when neither sample has more
    /// than 10,000 values. Larger samples: `pValue` is nil (scipy's `kstwo` asymptotic; not built yet).
    public struct KolmogorovSmirnov: Sendable, Equatable {
        public var statistic: Double
        public var pValue: Double?
    }

    public static let maxExactKSSize = 10_000

    public static func kolmogorovSmirnov(_ reference: [Double], _ live: [Double]) -> KolmogorovSmirnov? {
        guard !reference.isEmpty, !live.isEmpty else { return nil }
        let a = reference.sorted(), b = live.sorted()
        let n1 = a.count, n2 = b.count
        // The ECDFs' difference at every observed value (as scipy evaluates it: searchsorted, side right).
        var maxPlus = -Double.infinity, maxMinus = -Double.infinity
        for value in a + b {
            let difference = Double(upperBound(a, value)) / Double(n1) - Double(upperBound(b, value)) / Double(n2)
            maxPlus = max(maxPlus, difference)
            maxMinus = max(maxMinus, -difference)
        }
        let minS = min(max(maxMinus, 0), 1)
        var d = minS > maxPlus ? minS : maxPlus
        guard max(n1, n2) <= maxExactKSSize else { return KolmogorovSmirnov(statistic: d, pValue: nil) }
        let g = gcd(n1, n2)
        let lcm = (n1 / g) * n2
        let h = Int((d * Double(lcm)).rounded(.toNearestOrEven))
        d = Double(h) / Double(lcm)
        guard h > 0 else { return KolmogorovSmirnov(statistic: d, pValue: 1) }
        let p = n1 == n2 ? probabilityOutsideSquare(n1, h) : outerProbabilityInside(n1, n2, g, h)
        guard p.isFinite, p >= 0, p <= 1 else { return KolmogorovSmirnov(statistic: d, pValue: nil) }
        return KolmogorovSmirnov(statistic: d, pValue: min(max(p, 0), 1))
    }

    /// Paths from (0, 0) to (n, n) that leave the band |x - y| < h, as a share of all (equal sample sizes).
    static func probabilityOutsideSquare(_ n: Int, _ h: Int) -> Double {
        var total = 0.0
        var k = n / h
        while k >= 0 {
            var term = 1.0
            for j in 0..<h {
                term = Double(n - k * h - j) * term / Double(n + k * h + j + 1)
            }
            total = term * (1 - total)
            k -= 1
        }
        return 2 * total
    }

    /// 1 - the share of lattice paths from (0, 0) to (m, n) that stay strictly inside |x/m - y/n| < h/lcm,
    /// computed column by column as 1 - p directly (Viehmann 2021), which keeps small p-values accurate.
    static func outerProbabilityInside(_ first: Int, _ second: Int, _ g: Int, _ h: Int) -> Double {
        let (m, n) = first >= second ? (first, second) : (second, first)
        let mg = m / g, ng = n / g
        var minj = 0
        var maxj = min(Int((Double(h) / Double(mg)).rounded(.up)), n + 1)
        var length = maxj - minj
        let capacity = min(2 * maxj + 2, n + 1)
        var column = [Double](repeating: 1, count: max(capacity, 1))
        for j in minj..<maxj { column[j] = 0 }
        for i in 1...m {
            let lastMin = minj, lastLength = length
            minj = max(Int((Double(ng * i - h) / Double(mg)).rounded(.down)) + 1, 0)
            minj = min(minj, n)
            maxj = min(Int((Double(ng * i + h) / Double(mg)).rounded(.up)), n + 1)
            if maxj <= minj { return 1 }
            var value = minj == 0 ? 0.0 : 1.0
            for jj in 0..<(maxj - minj) {
                let j = jj + minj
                value = (column[jj + minj - lastMin] * Double(i) + value * Double(j)) / Double(i + j)
                column[jj] = value
            }
            length = maxj - minj
            if lastLength > length {
                for index in (maxj - minj)..<min(lastLength, column.count) { column[index] = 1 }
            }
        }
        return column[maxj - minj - 1]
    }

    // MARK: Wasserstein

    /// `scipy.stats.wasserstein_distance(reference, live)`: the area between the two empirical CDFs.
    public static func wasserstein(_ reference: [Double], _ live: [Double]) -> Double? {
        guard !reference.isEmpty, !live.isEmpty else { return nil }
        let u = reference.sorted(), v = live.sorted()
        let all = (u + v).sorted()
        var total = 0.0
        for index in 0..<(all.count - 1) {
            let delta = all[index + 1] - all[index]
            let uCDF = Double(upperBound(u, all[index])) / Double(u.count)
            let vCDF = Double(upperBound(v, all[index])) / Double(v.count)
            total += abs(uCDF - vCDF) * delta
        }
        return total
    }

    // MARK: Bins, PSI, Jensen-Shannon

    /// `numpy.quantile(values, [0.1, ..., 0.9])` (its default linear method), with repeated edges removed
    /// (integer features repeat them): the edges of the reference's decile bins.
    public static func decileEdges(_ values: [Double]) -> [Double] {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return [] }
        var edges: [Double] = []
        for step in 1...9 {
            let edge = quantile(sorted, Double(step) / 10)
            if edges.last != edge { edges.append(edge) }
        }
        return edges
    }

    /// numpy's linear quantile of sorted values, its interpolation step for step.
    static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        let virtual = Double(sorted.count - 1) * q
        var previous = Int(virtual.rounded(.down)), next = previous + 1
        if virtual >= Double(sorted.count - 1) { (previous, next) = (sorted.count - 1, sorted.count - 1) }
        if virtual < 0 { (previous, next) = (0, 0) }
        let gamma = virtual - Double(Int(virtual.rounded(.down)))
        let a = sorted[previous], b = sorted[min(next, sorted.count - 1)]
        let difference = b - a
        return gamma >= 0.5 ? b - difference * (1 - gamma) : a + difference * gamma
    }

    /// Counts per bin: (-inf, e1], (e1, e2], ..., (em, +inf).
    public static func binCounts(_ values: [Double], edges: [Double]) -> [Int] {
        var counts = [Int](repeating: 0, count: edges.count + 1)
        for value in values {
            // The first edge at or above the value (bins are closed on the right).
            var low = 0, high = edges.count
            while low < high {
                let mid = (low + high) / 2
                if edges[mid] < value { low = mid + 1 } else { high = mid }
            }
            counts[low] += 1
        }
        return counts
    }

    /// The population stability index of live counts against reference counts over the same bins:
    /// the sum of (a - e) * ln(a / e) over proportions, a zero proportion replaced by 1e-4.
    public static func psi(reference: [Int], live: [Int]) -> Double? {
        let totalReference = Double(reference.reduce(0, +)), totalLive = Double(live.reduce(0, +))
        guard totalReference > 0, totalLive > 0, reference.count == live.count else { return nil }
        var sum = 0.0
        for (e, a) in zip(reference, live) {
            let expected = max(Double(e) / totalReference, 0) == 0 ? 1e-4 : Double(e) / totalReference
            let actual = Double(a) / totalLive == 0 ? 1e-4 : Double(a) / totalLive
            sum += (actual - expected) * log(actual / expected)
        }
        return sum
    }

    /// `scipy.spatial.distance.jensenshannon(reference, live, base=2)` on counts (normalised first).
    public static func jensenShannon(reference: [Int], live: [Int]) -> Double? {
        let totalReference = Double(reference.reduce(0, +)), totalLive = Double(live.reduce(0, +))
        guard totalReference > 0, totalLive > 0, reference.count == live.count else { return nil }
        var left = 0.0, right = 0.0
        for (e, a) in zip(reference, live) {
            let p = Double(e) / totalReference, q = Double(a) / totalLive
            let m = (p + q) / 2
            left += relativeEntropy(p, m)
            right += relativeEntropy(q, m)
        }
        return ((left + right) / log(2.0) / 2).squareRoot()
    }

    /// `scipy.special.rel_entr`.
    static func relativeEntropy(_ x: Double, _ y: Double) -> Double {
        if x > 0 && y > 0 { return x * log(x / y) }
        if x == 0 && y >= 0 { return 0 }
        return .infinity
    }

    // MARK: Chi-squared

    public struct ChiSquared: Sendable, Equatable {
        public var statistic: Double
        public var pValue: Double
        public var degreesOfFreedom: Int
    }

    /// `scipy.stats.chi2_contingency` of the 2 x K table of reference and live counts (its defaults: Pearson's
    /// statistic, Yates' correction when there is one degree of freedom). Categories counted zero in both
    /// must be left out by the caller.
    public static func chiSquared(reference: [Int], live: [Int]) -> ChiSquared? {
        guard reference.count == live.count, !reference.isEmpty else { return nil }
        let rows = [reference.map(Double.init), live.map(Double.init)]
        let rowTotals = rows.map { $0.reduce(0, +) }
        let columnTotals = (0..<reference.count).map { rows[0][$0] + rows[1][$0] }
        let total = rowTotals.reduce(0, +)
        guard total > 0, rowTotals.allSatisfy({ $0 > 0 }), columnTotals.allSatisfy({ $0 > 0 }) else { return nil }
        let dof = (2 - 1) * (reference.count - 1)
        guard dof > 0 else { return ChiSquared(statistic: 0, pValue: 1, degreesOfFreedom: 0) }
        var statistic = 0.0
        for row in 0..<2 {
            for column in 0..<reference.count {
                // scipy's expected_freq: the outer product of the margins, divided by the total.
                let expected = rowTotals[row] * columnTotals[column] / total
                var observed = rows[row][column]
                if dof == 1 {
                    let difference = expected - observed
                    observed += min(0.5, abs(difference)) * (difference > 0 ? 1 : difference < 0 ? -1 : 0)
                }
                statistic += (observed - expected) * (observed - expected) / expected
            }
        }
        return ChiSquared(statistic: statistic, pValue: chiSquaredSurvival(statistic, degreesOfFreedom: dof), degreesOfFreedom: dof)
    }

    /// P(X > x) for a chi-squared variable: the regularised upper incomplete gamma Q(k/2, x/2).
    public static func chiSquaredSurvival(_ x: Double, degreesOfFreedom k: Int) -> Double {
        guard x > 0 else { return 1 }
        return upperRegularizedGamma(Double(k) / 2, x / 2)
    }

    /// Q(a, x) by its series (x < a + 1) or its continued fraction (Lentz's method).
    static func upperRegularizedGamma(_ a: Double, _ x: Double) -> Double {
        let logPrefix = a * log(x) - x - lgamma(a)
        if x < a + 1 {
            var term = 1 / a, sum = term, n = a
            for _ in 0..<10_000 {
                n += 1
                term *= x / n
                sum += term
                if abs(term) < abs(sum) * 1e-17 { break }
            }
            return max(0, 1 - sum * exp(logPrefix))
        }
        let tiny = 1e-300
        var b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d
        for i in 1...10_000 {
            let an = -Double(i) * (Double(i) - a)
            b += 2
            d = an * d + b
            if abs(d) < tiny { d = tiny }
            c = b + an / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            let delta = d * c
            h *= delta
            if abs(delta - 1) < 1e-16 { break }
        }
        return exp(logPrefix) * h
    }

    // MARK: Helpers

    /// The number of sorted values at or below `value` (numpy's searchsorted, side right).
    static func upperBound(_ sorted: [Double], _ value: Double) -> Int {
        var low = 0, high = sorted.count
        while low < high {
            let mid = (low + high) / 2
            if sorted[mid] <= value { low = mid + 1 } else { high = mid }
        }
        return low
    }

    static func gcd(_ a: Int, _ b: Int) -> Int {
        var (a, b) = (a, b)
        while b != 0 { (a, b) = (b, a % b) }
        return a
    }
}
