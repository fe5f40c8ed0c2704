import Foundation

/// Drift thresholds: when a feature is reported as drifted. Defaults follow common practice: PSI above 0.2
/// is a significant shift; a test's p-value under 0.01. No verdict below a minimum of live values: at least
/// `minimumSample` (100), and for PSI at least `minimumPerBin` (5) per bin it compares on average (a
/// categorical feature with 30 categories needs 150): below that, every statistic flags noise (40 ordinary
/// rows put PSI over 0.2 for a third of the German credit features). The statistics are still reported,
/// with `drifted: false` and `insufficient_data` saying what was missing.
public struct DriftThresholds: Sendable, Equatable {
    public var psi = 0.2
    public var pValue = 0.01
    public var minimumSample = 100
    public var minimumPerBin = 5

    /// The live values a feature compared over `bins` bins needs for a verdict.
    public func minimum(bins: Int) -> Int { max(minimumSample, minimumPerBin * bins) }

    public init() {}
}

/// Every statistic of one feature, reference against live.
public struct FeatureDrift: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable { case numeric, categorical }

    public var feature: String
    public var kind: Kind
    public var referenceCount: Int
    public var liveCount: Int
    /// Shares of missing values (empty, NaN, NA, null), left out of every statistic.
    public var referenceMissingRate: Double
    public var liveMissingRate: Double
    public var psi: Double?
    public var jensenShannon: Double?
    /// Numeric: two-sample Kolmogorov-Smirnov and Wasserstein-1.
    public var ksStatistic: Double?
    public var ksPValue: Double?
    public var wasserstein: Double?
    /// Categorical: chi-squared of the 2 x K table.
    public var chiSquared: Double?
    public var chiSquaredPValue: Double?
    /// Categorical: categories the reference never had, and reference categories the live data lacks.
    public var newCategories: [String]?
    public var vanishedCategories: [String]?
    /// The bins the PSI compared (numeric: `<= e1`, `(e1, e2]`, ..., `> em`; categorical: the categories),
    /// with the reference's and the live data's counts: what a histogram of the two shows.
    public var bins: [String]?
    public var referenceCounts: [Int]?
    public var liveCounts: [Int]?
    /// Whether the thresholds call it drift, and why.
    public var drifted: Bool
    public var reasons: [String]
    /// Why no verdict was given (`insufficient data: 40 rows, need 100`); nil when there was one.
    public var insufficientData: String? = nil

    /// How strongly it drifted, for sorting: the PSI (or, without one, the KS statistic).
    public var severity: Double { psi ?? ksStatistic ?? 0 }
}

/// Compares two tables column by column (the columns both have): a column whose present values all read as
/// numbers is numeric, any other categorical.
public enum DriftReport {
    public static let missingTokens: Set<String> = ["", "nan", "NaN", "NAN", "NA", "N/A", "null", "NULL", "None"]

    /// - Parameter referenceBins: a numeric column's decile edges and counts over the whole reference data
    ///   (a bundle's profile keeps them): PSI and Jensen-Shannon use them instead of the sample's.
    public static func compare(
        reference: [String: [String]], live: [String: [String]], columns: [String], thresholds: DriftThresholds = .init(),
        referenceBins: [String: (edges: [Double], counts: [Int])] = [:]
    ) -> [FeatureDrift] {
        columns.compactMap { name -> FeatureDrift? in
            guard let referenceCells = reference[name], let liveCells = live[name] else { return nil }
            return feature(name, referenceCells, liveCells, thresholds, referenceBins[name])
        }
    }

    static func feature(
        _ name: String, _ referenceCells: [String], _ liveCells: [String], _ thresholds: DriftThresholds,
        _ bins: (edges: [Double], counts: [Int])? = nil
    ) -> FeatureDrift {
        let referencePresent = referenceCells.filter { !missingTokens.contains($0.trimmingCharacters(in: .whitespaces)) }
        let livePresent = liveCells.filter { !missingTokens.contains($0.trimmingCharacters(in: .whitespaces)) }
        let referenceNumbers = referencePresent.compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        let liveNumbers = livePresent.compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        let numeric =
            referenceNumbers.count == referencePresent.count && liveNumbers.count == livePresent.count
            && !referencePresent.isEmpty
        var drift = FeatureDrift(
            feature: name, kind: numeric ? .numeric : .categorical, referenceCount: referencePresent.count,
            liveCount: livePresent.count,
            referenceMissingRate: rate(referenceCells.count - referencePresent.count, referenceCells.count),
            liveMissingRate: rate(liveCells.count - livePresent.count, liveCells.count), drifted: false, reasons: [])
        if numeric {
            let edges = bins?.edges ?? DriftStatistics.decileEdges(referenceNumbers)
            let referenceCounts = bins?.counts ?? DriftStatistics.binCounts(referenceNumbers, edges: edges)
            let liveCounts = DriftStatistics.binCounts(liveNumbers, edges: edges)
            drift.psi = DriftStatistics.psi(reference: referenceCounts, live: liveCounts)
            drift.jensenShannon = DriftStatistics.jensenShannon(reference: referenceCounts, live: liveCounts)
            drift.bins = binNames(edges)
            drift.referenceCounts = referenceCounts
            drift.liveCounts = liveCounts
            let ks = DriftStatistics.kolmogorovSmirnov(referenceNumbers, liveNumbers)
            drift.ksStatistic = ks?.statistic
            drift.ksPValue = ks?.pValue
            drift.wasserstein = DriftStatistics.wasserstein(referenceNumbers, liveNumbers)
        } else {
            let categories = Array(Set(referencePresent).union(livePresent)).sorted()
            var referenceCounts: [String: Int] = [:], liveCounts: [String: Int] = [:]
            for value in referencePresent { referenceCounts[value, default: 0] += 1 }
            for value in livePresent { liveCounts[value, default: 0] += 1 }
            let r = categories.map { referenceCounts[$0] ?? 0 }, l = categories.map { liveCounts[$0] ?? 0 }
            drift.psi = DriftStatistics.psi(reference: r, live: l)
            drift.jensenShannon = DriftStatistics.jensenShannon(reference: r, live: l)
            drift.bins = categories
            drift.referenceCounts = r
            drift.liveCounts = l
            let chi = DriftStatistics.chiSquared(reference: r, live: l)
            drift.chiSquared = chi?.statistic
            drift.chiSquaredPValue = chi?.pValue
            drift.newCategories = categories.filter { referenceCounts[$0] == nil }
            drift.vanishedCategories = categories.filter { liveCounts[$0] == nil }
        }
        judge(&drift, thresholds)
        return drift
    }

    static func judge(_ drift: inout FeatureDrift, _ thresholds: DriftThresholds) {
        let needed = thresholds.minimum(bins: drift.bins?.count ?? 0)
        guard drift.liveCount >= needed else {
            drift.insufficientData = "insufficient data: \(drift.liveCount) rows, need \(needed)"
            drift.drifted = false
            return
        }
        if let psi = drift.psi, psi > thresholds.psi {
            drift.reasons.append(String(format: "PSI %.3f > %.2f", psi, thresholds.psi))
        }
        if let p = drift.ksPValue, p < thresholds.pValue {
            drift.reasons.append(String(format: "KS p %.2g < %.2g", p, thresholds.pValue))
        }
        if let p = drift.chiSquaredPValue, p < thresholds.pValue {
            drift.reasons.append(String(format: "chi-squared p %.2g < %.2g", p, thresholds.pValue))
        }
        if let new = drift.newCategories, !new.isEmpty {
            drift.reasons.append("new categories: " + new.joined(separator: ", "))
        }
        drift.drifted = !drift.reasons.isEmpty
    }

    /// Names of the decile bins: `<= 1.5`, `(1.5, 2.25]`, ..., `> 9`.
    static func binNames(_ edges: [Double]) -> [String] {
        guard !edges.isEmpty else { return ["all"] }
        func text(_ value: Double) -> String { String(format: "%.4g", value) }
        var names = ["<= " + text(edges[0])]
        for index in 1..<max(1, edges.count) where index < edges.count {
            names.append("(\(text(edges[index - 1])), \(text(edges[index]))]")
        }
        names.append("> " + text(edges[edges.count - 1]))
        return names
    }

    private static func rate(_ part: Int, _ whole: Int) -> Double { whole == 0 ? 0 : Double(part) / Double(whole) }
}
