import Foundation
import TernTestSupport
import Testing

@testable import TernStatistics

/// Golden values made by scipy and numpy (tools/make-drift-golden.py) on seeded data sets.
private struct Golden: Decodable {
    struct Numeric: Decodable {
        var name: String
        var reference: [Double?]
        var live: [Double?]
        var ks_statistic: Double
        var ks_pvalue: Double
        var wasserstein: Double
        var edges: [Double]
        var reference_counts: [Int]
        var live_counts: [Int]
        var psi: Double
        var jensen_shannon: Double
        var reference_missing: Int
        var live_missing: Int
    }

    struct Categorical: Decodable {
        var name: String
        var reference: [String]
        var live: [String]
        var categories: [String]
        var reference_counts: [Int]
        var live_counts: [Int]
        var chi2: Double
        var chi2_pvalue: Double
        var dof: Int
        var psi: Double
        var jensen_shannon: Double
        var new: [String]
        var vanished: [String]
    }

    struct KSTwo: Decodable {
        var n: Int
        var x: Double
        var sf: Double
    }

    var numeric: [Numeric]
    var categorical: [Categorical]
    var kstwo: [KSTwo]

    static func load() throws -> Golden {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.repositoryRoot + "/Tests/Fixtures/drift/golden.json"))
        return try JSONDecoder().decode(Golden.self, from: data)
    }
}

/// Equal to 1e-9 relative (statistics), or 1e-9 absolute (p-values).
private func close(_ actual: Double?, _ expected: Double, relative: Bool = true) -> Bool {
    guard let actual else { return false }
    if relative { return abs(actual - expected) <= 1e-9 * max(abs(expected), 1e-300) || actual == expected }
    return abs(actual - expected) <= 1e-9
}

@Suite("Drift statistics against scipy")
struct DriftStatisticsTests {
    @Test("numeric features: KS (exact p-value), Wasserstein, decile edges and counts, PSI, Jensen-Shannon")
    func numeric() throws {
        for item in try Golden.load().numeric {
            let reference = item.reference.compactMap { $0 }, live = item.live.compactMap { $0 }
            #expect(item.reference.count - reference.count == item.reference_missing, "\(item.name)")
            let ks = try #require(DriftStatistics.kolmogorovSmirnov(reference, live))
            #expect(close(ks.statistic, item.ks_statistic), "\(item.name): KS \(ks.statistic) != \(item.ks_statistic)")
            #expect(close(ks.pValue, item.ks_pvalue, relative: false), "\(item.name): p \(String(describing: ks.pValue)) != \(item.ks_pvalue)")
            #expect(close(DriftStatistics.wasserstein(reference, live), item.wasserstein), "\(item.name): Wasserstein")
            let edges = DriftStatistics.decileEdges(reference)
            #expect(edges == item.edges, "\(item.name): edges \(edges) != \(item.edges)")
            let referenceCounts = DriftStatistics.binCounts(reference, edges: edges)
            let liveCounts = DriftStatistics.binCounts(live, edges: edges)
            #expect(referenceCounts == item.reference_counts && liveCounts == item.live_counts, "\(item.name): counts")
            #expect(close(DriftStatistics.psi(reference: referenceCounts, live: liveCounts), item.psi), "\(item.name): PSI")
            #expect(
                close(DriftStatistics.jensenShannon(reference: referenceCounts, live: liveCounts), item.jensen_shannon)
                    || abs((DriftStatistics.jensenShannon(reference: referenceCounts, live: liveCounts) ?? -1) - item.jensen_shannon) < 1e-15,
                "\(item.name): Jensen-Shannon")
        }
    }

    @Test("categorical features: chi-squared of the 2 x K table (Yates for 2 categories), PSI, Jensen-Shannon")
    func categorical() throws {
        for item in try Golden.load().categorical {
            let categories = Array(Set(item.reference).union(item.live)).sorted()
            #expect(categories == item.categories)
            let referenceCounts = categories.map { c in item.reference.count { $0 == c } }
            let liveCounts = categories.map { c in item.live.count { $0 == c } }
            let chi = try #require(DriftStatistics.chiSquared(reference: referenceCounts, live: liveCounts))
            #expect(chi.degreesOfFreedom == item.dof, "\(item.name)")
            #expect(close(chi.statistic, item.chi2) || (chi.statistic == 0 && item.chi2 == 0), "\(item.name): chi2 \(chi.statistic) != \(item.chi2)")
            #expect(close(chi.pValue, item.chi2_pvalue, relative: false), "\(item.name): p \(chi.pValue) != \(item.chi2_pvalue)")
            #expect(close(DriftStatistics.psi(reference: referenceCounts, live: liveCounts), item.psi) || item.psi == 0, "\(item.name): PSI")
            let js = DriftStatistics.jensenShannon(reference: referenceCounts, live: liveCounts) ?? -1
            #expect(abs(js - item.jensen_shannon) <= 1e-9 * max(item.jensen_shannon, 1e-6), "\(item.name): JS \(js) != \(item.jensen_shannon)")
        }
    }

    @Test("the one-sample two-sided survival as scipy's kstwo.sf, in each of its methods")
    func kstwo() throws {
        for item in try Golden.load().kstwo {
            let sf = DriftStatistics.kolmogorovSurvival(n: item.n, item.x)
            #expect(close(sf, item.sf, relative: false), "n \(item.n), x \(item.x): \(String(describing: sf)) != \(item.sf)")
        }
    }

    @Test("empty samples have no statistic")
    func empty() {
        #expect(DriftStatistics.kolmogorovSmirnov([], [1]) == nil)
        #expect(DriftStatistics.wasserstein([1], []) == nil)
        #expect(DriftStatistics.decileEdges([]) == [])
        #expect(DriftStatistics.psi(reference: [0, 0], live: [1, 1]) == nil)
    }

    @Test("below the minimum of live values a feature gets its statistics but no verdict, and a reason")
    func minimumSample() {
        // A shift PSI flags at once: the live values all in the reference's top decile.
        let reference = (0..<1000).map { String($0) }
        let shifted = (0..<40).map { String(950 + $0) }
        let few = DriftReport.compare(reference: ["x": reference], live: ["x": shifted], columns: ["x"])[0]
        #expect(few.psi! > 0.2 && few.ksPValue! < 0.01)
        #expect(!few.drifted && few.reasons.isEmpty)
        #expect(few.insufficientData == "insufficient data: 40 rows, need 100")
        let enough = DriftReport.compare(reference: ["x": reference], live: ["x": (0..<100).map { String(900 + $0) }], columns: ["x"])[0]
        #expect(enough.drifted && enough.insufficientData == nil)
        // A categorical feature needs 5 rows per category on average: 30 categories, 150 rows.
        let categories = (0..<3000).map { "c\($0 % 30)" }
        let some = DriftReport.compare(reference: ["k": categories], live: ["k": Array(categories.prefix(120))], columns: ["k"])[0]
        #expect(!some.drifted && some.insufficientData == "insufficient data: 120 rows, need 150")
    }
}
