import Foundation

/// Drift statistics between a reference sample (training data) and a live one, each computed exactly as the
/// scipy or numpy function it is named after computes it, so that a user's notebook and Tern agree to the
/// last digits (tests compare with golden values scipy made).
public enum DriftStatistics {
    // MARK: Kolmogorov-Smirnov

    /// The two-sample Kolmogorov-Smirnov test, two-sided, as `scipy.stats.ks_2samp(reference, live)` with its
    /// default `method="auto"`: the largest distance between the two empirical CDFs, and its p-value,
    /// exact (Hodges' lattice-path counts, in Viehmann's numerically stable form) when neither sample has more
    /// than 10,000 values; past that, as scipy, the two-sided one-sample distribution `kstwo.sf(d, n)` with
    /// n = round(n1*n2/(n1+n2)) (Simard and L'Ecuyer's choice among exact Smirnov sums, the Durbin matrix and
    /// Pelz-Good's series). `pValue` is nil in the one case not built: n <= 140 with 0.754693 < n*d^2 <= 4
    /// (scipy's Pomeranz recursion), reached only with a live sample of about 140 values or fewer against a
    /// reference of more than 10,000.
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
        guard max(n1, n2) <= maxExactKSSize else {
            let (m, n) = (Double(max(n1, n2)), Double(min(n1, n2)))
            let en = (m * n / (m + n)).rounded(.toNearestOrEven)
            return KolmogorovSmirnov(statistic: d, pValue: kolmogorovSurvival(n: Int(en), d).map { min(max($0, 0), 1) })
        }
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

    // MARK: The one-sample two-sided distribution (scipy's kstwo)

    /// P(D_n >= x) for the two-sided one-sample statistic, as scipy's `kstwo.sf` chooses its method.
    static func kolmogorovSurvival(n: Int, _ x: Double) -> Double? {
        guard n > 0 else { return nil }
        if x >= 1 { return 0 }
        if x <= 0 { return 1 }
        let nd = Double(n), t = nd * x
        if t <= 1 {  // Ruben-Gambino: 1/2n <= x <= 1/n
            if t <= 0.5 { return 1 }
            let cdf: Double
            if n <= 140 {
                var product = 1.0
                for i in 1...n { product *= Double(i) * (1 / nd) * (2 * t - 1) }
                cdf = product
            } else {
                cdf = exp(logFactorialOverPower(nd) + nd * log(2 * t - 1))
            }
            return 1 - cdf
        }
        if t >= nd - 1 { return 2 * pow(1 - x, nd) }
        if x >= 0.5 { return 2 * smirnovSurvival(n, x) }
        let nxSquared = t * x
        if n <= 140 {
            if nxSquared <= 0.754693 { return 1 - durbinMatrixCDF(n, x) }
            if nxSquared <= 4 { return nil }  // scipy's Pomeranz recursion: not built
            return 2 * smirnovSurvival(n, x)
        }
        if nxSquared >= 370 { return 0 }
        if nxSquared >= 2.2 { return 2 * smirnovSurvival(n, x) }
        let cdf = n <= 100_000 && nd * pow(x, 1.5) <= 1.4 ? durbinMatrixCDF(n, x) : pelzGoodCDF(n, x)
        return 1 - cdf
    }

    /// log(n! / n^n) by Stirling's series, as scipy writes it.
    static func logFactorialOverPower(_ n: Double) -> Double {
        let coefficients = [
            -2.955065359477124183e-2, 6.4102564102564102564e-3, -1.9175269175269175269e-3,
            8.4175084175084175084e-4, -5.952380952380952381e-4, 7.9365079365079365079e-4,
            -2.7777777777777777778e-3, 8.3333333333333333333e-2,
        ]
        let rn = 1 / n
        var poly = 0.0
        for c in coefficients { poly = poly * (rn / n) + c }
        return log(n) / 2 - n + log(2 * Double.pi) / 2 + rn * poly
    }

    /// The one-sided Smirnov statistic's survival P(D+_n >= x), by the Birnbaum-Tingey sum (its terms are
    /// all positive; summed in logs).
    static func smirnovSurvival(_ n: Int, _ x: Double) -> Double {
        if n == 1 { return x }
        if x <= 0 { return 1 }
        if x >= 1 { return 0 }
        let nd = Double(n)
        let last = Int((nd * (1 - x)).rounded(.down))
        let logN: Double = lgamma(nd + 1)
        var sum = 0.0
        for j in 0...last {
            let base = 1 - x - Double(j) / nd
            guard base > 0 else { continue }
            let logTerm: Double =
                logN - lgamma(Double(j) + 1) - lgamma(nd - Double(j) + 1)
                + (nd - Double(j)) * log(base) + Double(j - 1) * log(x + Double(j) / nd)
            sum += exp(logTerm)
        }
        return x * sum
    }

    /// P(D_n <= d) by the Durbin matrix (Marsaglia, Tsang and Wang), powers scaled to stay in range.
    static func durbinMatrixCDF(_ n: Int, _ d: Double) -> Double {
        if d >= 1 { return 1 }
        let nd = Double(n) * d
        if nd <= 0.5 { return 0 }
        let k = Int(nd.rounded(.up))
        let h = Double(k) - nd
        let m = 2 * k - 1
        var v = (1...m).map { 1 - pow(h, Double($0)) }
        var w = [Double](repeating: 0, count: m)
        var factor = 1.0
        for j in 1...m {
            w[j - 1] = factor
            factor /= Double(j)
            v[j - 1] *= factor
        }
        let tt = pow(max(2 * h - 1, 0), Double(m)) - 2 * pow(h, Double(m))
        v[m - 1] = (1 + tt) * factor
        var matrix = [[Double]](repeating: [Double](repeating: 0, count: m), count: m)
        for i in 1..<max(m, 1) where i < m {
            for row in (i - 1)..<m { matrix[row][i] = w[row - (i - 1)] }
        }
        for row in 0..<m { matrix[row][0] = v[row] }
        for column in 0..<m { matrix[m - 1][column] = v[m - 1 - column] }
        func multiply(_ a: [[Double]], _ b: [[Double]]) -> [[Double]] {
            var c = [[Double]](repeating: [Double](repeating: 0, count: m), count: m)
            for i in 0..<m { for l in 0..<m where a[i][l] != 0 { for j in 0..<m { c[i][j] += a[i][l] * b[l][j] } } }
            return c
        }
        let scale = pow(2.0, 128.0)
        var power = (0..<m).map { i in (0..<m).map { $0 == i ? 1.0 : 0.0 } }
        var base = matrix
        var exponent = 0, baseExponent = 0
        var remaining = n
        while remaining > 0 {
            if remaining % 2 == 1 {
                power = multiply(power, base)
                exponent += baseExponent
            }
            base = multiply(base, base)
            baseExponent *= 2
            if abs(base[k - 1][k - 1]) > scale {
                base = base.map { $0.map { $0 / scale } }
                baseExponent += 128
            }
            remaining /= 2
        }
        var p = power[k - 1][k - 1]
        for i in 1...n {
            p = Double(i) * p / Double(n)
            if abs(p) < 1 / scale {
                p *= scale
                exponent -= 128
            }
        }
        return exponent != 0 ? scalbn(p, exponent) : p
    }

    /// Pelz and Good's approximation of P(D_n <= x).
    static func pelzGoodCDF(_ n: Int, _ x: Double) -> Double {
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        let pi2 = Double.pi * Double.pi, pi4 = pi2 * pi2, pi6 = pi4 * pi2
        let z = Double(n).squareRoot() * x
        let z2 = z * z, z3 = z2 * z, z4 = z2 * z2, z6 = z4 * z2
        let qlog = -pi2 / 8 / z2
        if qlog < -708 { return 0 }
        var q = exp(qlog)
        let k1a = -z2, k1b = pi2 / 4
        let k2a = 6 * z6 + 2 * z4, k2b = (2 * z4 - 5 * z2) * pi2 / 4, k2c = pi4 * (1 - 2 * z2) / 16
        let k3d = pi6 * (5 - 30 * z2) / 64, k3c = pi4 * (-60 * z2 + 212 * z4) / 16
        let k3b = pi2 * (135 * z4 - 96 * z6) / 4, k3a = -30 * z6 - 90 * pow(z, 8)
        var terms = [0.0, 0.0, 0.0, 0.0]
        let maxk = Int((16 * z / Double.pi).rounded(.up))
        if maxk >= 1 {
            for k in stride(from: maxk, through: 1, by: -1) {
                let m = Double(2 * k - 1)
                let m2 = m * m, m4 = m2 * m2, m6 = m4 * m2
                let qpower = pow(q, Double(8 * k))
                let coefficients = [1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4, k3a + k3b * m2 + k3c * m4 + k3d * m6]
                for i in 0..<4 { terms[i] = terms[i] * qpower + coefficients[i] }
            }
        }
        let sqrt2pi = (2 * Double.pi).squareRoot()
        let divisors = [z, 6 * z4, 72 * pow(z, 7), 6480 * pow(z, 10)]
        for i in 0..<4 { terms[i] = terms[i] * q * sqrt2pi / divisors[i] }
        q = exp(-pi2 / 2 / z2)
        var k2extra = 0.0, k3extra = 0.0
        let sqrt3z = 3.0.squareRoot() * z
        if maxk >= 1 {
            for k in stride(from: maxk, through: 1, by: -1) {
                let ks = Double(k), ksquared = ks * ks
                let qpower = pow(q, ksquared)
                k2extra += ksquared * qpower
                let kspi = Double.pi * ks
                k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qpower
            }
        }
        terms[2] += k2extra * pi2 * sqrt2pi / (-36 * z3)
        terms[3] += k3extra * pi2 * sqrt2pi / (216 * z6)
        var total = 0.0
        for i in 0..<4 { total += terms[i] / pow(Double(n), Double(i) / 2) }
        return total
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
